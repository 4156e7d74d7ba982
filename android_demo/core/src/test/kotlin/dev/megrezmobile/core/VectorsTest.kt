package dev.megrezmobile.core

import dev.megrezmobile.cli.planRequest
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import javax.imageio.ImageIO
import kotlin.math.log10
import kotlin.test.Test
import kotlin.test.assertEquals
import kotlin.test.assertTrue
import kotlin.test.fail

/** The Python SDK's vectors (tests/vectors/front_end, `python -m megrez_mobile.processing.vectors`) against the core. */
class VectorsTest {
    private val root = File(System.getProperty("megrez.vectors") ?: "../../tests/vectors/front_end")
    private val cases = File(root, "cases").listFiles()!!.filter { it.isDirectory }.sortedBy { it.name }

    @Test fun everyCaseGivesPythonsPlanByteForByte() {
        assertTrue(cases.size >= 10, "expected the vector cases in $root")
        for (case in cases) {
            val plan = planRequest(File(case, "request.json"))
            assertEquals(File(case, "plan.json").readText(), Json.canonical(plan.toJson()), "case ${case.name}")
        }
    }

    @Test fun slicePixelsMatchPillowWithinOne() {
        var compared = 0
        var worst = 0
        for (case in cases) {
            val pixels = File(case, "pixels").listFiles()?.sortedBy { it.name } ?: continue
            val plan = planRequest(File(case, "request.json"))
            for (png in pixels) {
                val k = png.name.removePrefix("input").removeSuffix(".png").toInt()
                val mine = (plan.inputs[k] as RunnerInput.Image).pixels
                val ref = ImageIO.read(png)
                assertEquals(ref.width to ref.height, mine.width to mine.height, "${case.name}/${png.name} size")
                for (y in 0 until ref.height) for (x in 0 until ref.width) {
                    val p = ref.getRGB(x, y)
                    for (c in 0 until 3) {
                        val d = Math.abs(((p shr (16 - 8 * c)) and 0xff) - mine.get(x, y, c))
                        if (d > worst) worst = d
                        if (d > 1) fail("${case.name}/${png.name} pixel ($x, $y) channel $c differs by $d")
                    }
                }
                compared++
            }
        }
        assertTrue(compared >= 12, "only $compared slice images compared")
        println("slice pixels: $compared images, largest difference $worst")
    }

    @Test fun sliceGeometryMatchesForEverySize() {
        @Suppress("UNCHECKED_CAST") val rows = Json.parse(File(root, "geometry.json").readText()) as List<List<Long>>
        assertTrue(rows.size > 1000)
        for (r in rows) {
            val (w, h) = r[0].toInt() to r[1].toInt()
            val l = SliceGeometry.layout(w, h)
            val got = listOf(w, h, l.source.width, l.source.height, l.grid?.cols ?: 0, l.grid?.rows ?: 0,
                l.slice?.width ?: 0, l.slice?.height ?: 0).map { it.toLong() }
            assertEquals(r, got, "geometry of ${w}x$h")
        }
    }

    @Test fun audioLengthsClipsAndTokensMatch() {
        @Suppress("UNCHECKED_CAST") val rows = Json.parse(File(root, "audio_lengths.json").readText()) as List<List<Any?>>
        val cfg = AudioConfig()
        for (r in rows) {
            val n = (r[0] as Long).toInt()
            val rate = (r[1] as Long).toInt()
            val expected = r[2]
            val got: Any = try {
                AudioPrep.checkedModelLength(n, rate, cfg).toLong()
            } catch (e: AudioInputError) { e.kind }
            assertEquals(expected, got, "length of $n samples at $rate Hz")
            if (got !is Long) continue
            val clips = AudioPrep.splitClips(got.toInt(), cfg)
            assertEquals(r[3], clips.map { it.samples.toLong() }, "clips of $n @ $rate")
            assertEquals(r[4], clips.map { it.melFrames.toLong() }, "mel frames of $n @ $rate")
            assertEquals(r[5], clips.map { it.tokens.toLong() }, "tokens of $n @ $rate")
        }
    }

    @Test fun resamplerStaysCloseToSoxr() {
        for (name in listOf("stereo_44k_0p4s", "long_8k_31s_u8")) {
            val wav = WavAudio.parse(File(root, "inputs/$name.wav").readBytes())
            val mine = AudioPrep.toModelRate(wav.mono, wav.sampleRate)
            val bytes = File(root, "resampled/$name.f32").readBytes()
            val ref = FloatArray(bytes.size / 4).also { ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(it) }
            assertEquals(AudioPrep.resampledLength(wav.mono.size, wav.sampleRate), mine.size)
            // Compare away from the ends (both resamplers treat the outside as silence, with different filters).
            var signal = 0.0
            var noise = 0.0
            for (i in 200 until ref.size - 200) { signal += ref[i] * ref[i].toDouble(); val d = ref[i] - mine[i]; noise += d * d.toDouble() }
            val snr = 10 * log10(signal / noise)
            println("resampler vs soxr_hq, $name: SNR %.1f dB".format(snr))
            assertTrue(snr > 60, "$name: SNR %.1f dB against soxr_hq".format(snr))
        }
    }

    @Test fun exifOrientationIsReadFromTheJpeg() {
        assertEquals(6, ExifOrientation.readJpeg(File(root, "inputs/exif_rot6_160x96.jpg").readBytes()))
        assertEquals(1, ExifOrientation.readJpeg(File(root, "inputs/sample_image.jpg").readBytes()))
        assertEquals(1, ExifOrientation.readJpeg(File(root, "inputs/tiny_1x1.png").readBytes()))
    }
}
