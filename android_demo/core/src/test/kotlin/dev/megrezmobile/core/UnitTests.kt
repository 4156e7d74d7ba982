package dev.megrezmobile.core

import java.io.File
import java.nio.file.Files
import kotlin.test.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertNull
import kotlin.test.assertTrue

class ExifTransformTest {
    // 3x2 image whose red channel numbers the pixels row-major: 0 1 2 / 3 4 5.
    private val img = RgbImage(3, 2, ByteArray(18) { i -> if (i % 3 == 0) (i / 3).toByte() else 0 })
    private fun reds(im: RgbImage) = (0 until im.height).map { y -> (0 until im.width).map { x -> im.get(x, y, 0) } }

    @Test fun theEightOrientationsAreAsPillow() {
        assertEquals(listOf(listOf(0, 1, 2), listOf(3, 4, 5)), reds(ExifOrientation.apply(img, 1)))
        assertEquals(listOf(listOf(2, 1, 0), listOf(5, 4, 3)), reds(ExifOrientation.apply(img, 2)))  // mirror
        assertEquals(listOf(listOf(5, 4, 3), listOf(2, 1, 0)), reds(ExifOrientation.apply(img, 3)))  // 180
        assertEquals(listOf(listOf(3, 4, 5), listOf(0, 1, 2)), reds(ExifOrientation.apply(img, 4)))  // flip
        assertEquals(listOf(listOf(0, 3), listOf(1, 4), listOf(2, 5)), reds(ExifOrientation.apply(img, 5)))  // transpose
        assertEquals(listOf(listOf(3, 0), listOf(4, 1), listOf(5, 2)), reds(ExifOrientation.apply(img, 6)))  // 90 cw
        assertEquals(listOf(listOf(5, 2), listOf(4, 1), listOf(3, 0)), reds(ExifOrientation.apply(img, 7)))  // transverse
        assertEquals(listOf(listOf(2, 5), listOf(1, 4), listOf(0, 3)), reds(ExifOrientation.apply(img, 8)))  // 90 ccw
    }

    @Test fun garbageIsOrientationOne() {
        assertEquals(1, ExifOrientation.readJpeg(byteArrayOf()))
        assertEquals(1, ExifOrientation.readJpeg(byteArrayOf(0xFF.toByte(), 0xD8.toByte(), 0xFF.toByte(), 0xE1.toByte(), 0, 50)))
    }

    @Test fun anIfdOffsetPastTheBlockIsOrientationOne() {
        // EXIF blocks whose IFD offset points past their end (or past Int): 1, never an exception.
        for (offset in listOf(byteArrayOf(0x7F, 0xFF.toByte(), 0xFF.toByte(), 0xFF.toByte()), byteArrayOf(0, 0, 0x03, 0xE8.toByte()))) {
            val tiff = byteArrayOf(0x4D, 0x4D, 0, 42) + offset
            val app1 = "Exif\u0000\u0000".toByteArray(Charsets.ISO_8859_1) + tiff
            val jpeg = byteArrayOf(0xFF.toByte(), 0xD8.toByte(), 0xFF.toByte(), 0xE1.toByte(), 0, (app1.size + 2).toByte()) + app1
            assertEquals(1, ExifOrientation.readJpeg(jpeg))
        }
    }
}

class Utf8PieceBufferTest {
    @Test fun onlyCompleteCharactersLeave() {
        val b = Utf8PieceBuffer()
        val zh = "你好".toByteArray()  // 6 bytes
        assertEquals("", b.push(zh.copyOfRange(0, 2)))
        assertEquals("你", b.push(zh.copyOfRange(2, 4)))
        assertEquals("好!", b.push(zh.copyOfRange(4, 6) + "!".toByteArray()))
        val emoji = "🙂".toByteArray()
        assertEquals("a", b.push("a".toByteArray() + emoji.copyOfRange(0, 3)))
        assertEquals("🙂", b.push(emoji.copyOfRange(3, 4)))
        assertEquals("", b.push(byteArrayOf(0xE4.toByte())))
        assertEquals("\uFFFD", b.flush())
        assertEquals("\uFFFDx", b.push(byteArrayOf(0xFF.toByte(), 'x'.code.toByte())))
    }
}

class NeutralizeTest {
    private val added = listOf("<|turn_end|>", "<|role_start|>", "<|eos|>", "<|image_start|>")

    @Test fun ordinaryTextIsUnchanged() {
        for (t in listOf("hello", "你好", "a < b | c > d", "<|unknown|>", "🙂<|turn_end")) assertEquals(t, Neutralize.apply(t, added))
    }

    @Test fun everyOccurrenceIsBroken() {
        val out = Neutralize.apply("x<|turn_end|><|<|eos|>|>", added)
        assertEquals("x<\u2060|turn_end|><|<\u2060|eos|>|>", out)
        assertTrue(added.none { out.contains(it) })
    }

    @Test fun readsAddedTokensFromTokenizerJson() {
        val json = """{"added_tokens": [{"id": 1, "content": "<|eos|>", "special": true}, {"id": 2, "content": "<|x|>", "special": false}]}"""
        assertEquals(listOf("<|eos|>", "<|x|>"), Neutralize.addedTokens(json))
    }
}

class ManifestTest {
    private val sha = "a".repeat(64)
    private fun manifest(programFile: String = "model.pte", backend: String = "xnnpack", schema: Int = 1, extra: String = "") = """
        {"schema_version": $schema, "model_id": "Infinigence/Megrez-3B-Omni", "recipe": {"name": "xnnpack-8da4w"},
         "program": {"file": {"file": "$programFile", "bytes": 3, "sha256": "$sha"}, "backend": "$backend",
                     "methods": [{"name": "token_embedding", "backend": "portable"}, {"name": "text_decoder", "backend": "$backend"},
                                 {"name": "vision_encoder", "backend": "$backend"}], "constants": {} $extra},
         "tokenizer": {"file": "tokenizer.json", "bytes": 5, "sha256": "$sha"},
         "front_end": {"stop_ids": [5, 0], "default_system_prompt": "sys", "special_token_ids": {},
                       "preprocessor_config": {"scale_resolution": 448, "max_slice_nums": 9, "patch_size": 14}},
         "context": {"max_context": 4096, "max_seq_len": 1024}, "versions": {"executorch": "1.5.1"}}"""

    @Test fun readsEveryFieldTheAppUses() {
        val m = BundleManifest.parse(manifest())
        assertEquals("model.pte", m.program.file)
        assertEquals(4096, m.maxContext)
        assertEquals(1024, m.maxSeqLen)
        assertEquals(listOf(5L, 0L), m.stopIds)
        assertEquals("sys", m.frontEnd.defaultSystemPrompt)
        assertEquals("1.5.1", m.executorchVersion)
        assertEquals(emptyList(), BundleCheck.refusals(m, listOf("model.pte", "tokenizer.json", "manifest.json")))
    }

    @Test fun fileNamesMustStayInsideTheBundle() {
        for (bad in listOf("../model.pte", "/etc/passwd", "sub/model.pte", ".hidden", "..")) {
            val e = assertFailsWith<ManifestError> { BundleManifest.parse(manifest(programFile = bad)) }
            assertEquals("program.file.file", e.field)
        }
    }

    @Test fun errorsNameTheFieldAndTheFix() {
        val missing = assertFailsWith<ManifestError> { BundleManifest.parse(manifest().replace("\"max_seq_len\": 1024", "\"x\": 1")) }
        assertEquals("context.max_seq_len", missing.field)
        assertTrue("re-export" in missing.message!!)
        assertEquals("schema_version", assertFailsWith<ManifestError> { BundleManifest.parse(manifest(schema = 2)) }.field)
        assertFailsWith<ManifestError> { BundleManifest.parse("not json") }
    }

    @Test fun refusesWhatTheAarCannotRun() {
        val vulkan = BundleManifest.parse(manifest(backend = "vulkan"))
        assertTrue(BundleCheck.refusals(vulkan, emptyList()).single().contains("vulkan"))
        val ptd = BundleManifest.parse(manifest(extra = ", \"data_files\": [\"model.ptd\"]"))
        assertTrue(BundleCheck.refusals(ptd, emptyList()).single().contains(".ptd"))
        assertTrue(BundleCheck.versionWarning("1.6.0", "1.5.1")!!.contains("newer"))
        assertNull(BundleCheck.versionWarning("1.5.1+cpu", "1.5.1"))
        assertNull(BundleCheck.versionWarning("1.4.1", "1.5.1"))
    }

    @Test fun checksumsAreStreamedAndVerified() {
        assertEquals("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", Checksums.sha256("abc".byteInputStream()))
        val dir = Files.createTempDirectory("bundle").toFile()
        File(dir, "model.pte").writeText("abc")
        File(dir, "tokenizer.json").writeText("12345")
        val abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        val ok = BundleManifest.parse(manifest().replace("\"$sha\"}, \"backend\"", "\"$abc\"}, \"backend\""))
        assertEquals(listOf("tokenizer.json: sha256 differs from the manifest (corrupted or modified)"), Checksums.verifyBundle(dir, ok))
        File(dir, "model.pte").writeText("ab")
        assertTrue(Checksums.verifyBundle(dir, ok).single().startsWith("model.pte: 2 bytes"))
        dir.deleteRecursively()
    }
}

class BenchmarkOptionsTest {
    @Test fun parsesTheAgentsArguments() {
        assertEquals(BenchmarkOptions(), BenchmarkOptions.parse(emptyList()))
        val o = BenchmarkOptions.parseExtra("""["--reps","3","--warmup","0","--prefill","32,64","--decode","8","--decode-contexts","64,1024","--audio-seconds","2.5","--no-per-op","--threads","4"]""")
        assertEquals(BenchmarkOptions(3, 0, 4, listOf(32, 64), 8, listOf(64, 1024), 2.5, false, 15), o)
        val quick = BenchmarkOptions.parse(listOf("--quick", "--reps", "1"))
        assertEquals(BenchmarkOptions(1, 1, null, listOf(16, 64), 16, emptyList(), 5.0, true, 15), quick)
        assertFailsWith<IllegalArgumentException> { BenchmarkOptions.parse(listOf("--bogus")) }
        assertFailsWith<IllegalArgumentException> { BenchmarkOptions.parse(listOf("--reps", "x")) }
    }

    @Test fun statsAreWrittenAsTheAgentWritesThem() {
        val s = Stat("tok/s", "higher", listOf(3.0, 1.0, 2.0, 10.0))
        assertEquals(2.5, s.median)
        assertEquals(listOf("median", "min", "max", "spread", "n", "unit", "better", "samples"), s.toJson().keys.toList())
        val stats = AnswerStats.fromRunnerJson("""{"inference_start_ms": 1000, "prompt_eval_end_ms": 1500, "first_token_ms": 1500,
            "inference_end_ms": 3500, "num_prompt_tokens": 100, "num_generated_tokens": 40}""")
        assertEquals(500, stats.timeToFirstTokenMs)
        assertEquals(200.0, stats.prefillTokPerS)
        assertEquals(20.0, stats.decodeTokPerS)
    }
}

class JsonTest {
    @Test fun canonicalIsPythonsFormat() {
        val v = mapOf("b" to listOf(1, 2), "a" to "é\n\u2060\"", "c" to emptyMap<String, Any>(), "d" to null, "e" to true)
        assertEquals("{\n \"a\": \"\\u00e9\\n\\u2060\\\"\",\n \"b\": [\n  1,\n  2\n ],\n \"c\": {},\n \"d\": null,\n \"e\": true\n}\n",
            Json.canonical(v))
        val back = Json.parse(Json.canonical(v)) as Map<*, *>
        assertEquals("\u00e9\n\u2060\"", back["a"])
        assertEquals(listOf(1L, 2L), back["b"])
        assertEquals(true, back["e"])
        assertTrue(back.containsKey("d") && back["d"] == null)
    }
}
