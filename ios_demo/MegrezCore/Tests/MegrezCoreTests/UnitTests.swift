import Foundation
import XCTest
@testable import MegrezCore

// Kotlin twin: android_demo/core/src/test/kotlin/dev/megrezmobile/core/UnitTests.kt, class for class.

final class ExifTransformTest: XCTestCase {
    // 3x2 image whose red channel numbers the pixels row-major: 0 1 2 / 3 4 5.
    private func img() throws -> RgbImage {
        try RgbImage(3, 2, (0..<18).map { i in i % 3 == 0 ? UInt8(i / 3) : 0 })
    }

    private func reds(_ im: RgbImage) -> [[Int]] {
        (0..<im.height).map { y in (0..<im.width).map { x in im.get(x, y, 0) } }
    }

    func testTheEightOrientationsAreAsPillow() throws {
        let im = try img()
        XCTAssertEqual([[0, 1, 2], [3, 4, 5]], reds(ExifOrientation.apply(im, 1)))
        XCTAssertEqual([[2, 1, 0], [5, 4, 3]], reds(ExifOrientation.apply(im, 2)))  // mirror
        XCTAssertEqual([[5, 4, 3], [2, 1, 0]], reds(ExifOrientation.apply(im, 3)))  // 180
        XCTAssertEqual([[3, 4, 5], [0, 1, 2]], reds(ExifOrientation.apply(im, 4)))  // flip
        XCTAssertEqual([[0, 3], [1, 4], [2, 5]], reds(ExifOrientation.apply(im, 5)))  // transpose
        XCTAssertEqual([[3, 0], [4, 1], [5, 2]], reds(ExifOrientation.apply(im, 6)))  // 90 cw
        XCTAssertEqual([[5, 2], [4, 1], [3, 0]], reds(ExifOrientation.apply(im, 7)))  // transverse
        XCTAssertEqual([[2, 5], [1, 4], [0, 3]], reds(ExifOrientation.apply(im, 8)))  // 90 ccw
    }

    func testGarbageIsOrientationOne() {
        XCTAssertEqual(1, ExifOrientation.readJpeg([UInt8]()))
        XCTAssertEqual(1, ExifOrientation.readJpeg([0xFF, 0xD8, 0xFF, 0xE1, 0, 50]))
    }

    func testAnIfdOffsetPastTheBlockIsOrientationOne() {
        // EXIF blocks whose IFD offset points past their end: 1, never a crash (Swift traps on a bad index).
        for offset: [UInt8] in [[0x7F, 0xFF, 0xFF, 0xFF], [0, 0, 0x03, 0xE8]] {
            let tiff: [UInt8] = [0x4D, 0x4D, 0, 42] + offset
            let exif: [UInt8] = Array("Exif".utf8) + [0, 0] + tiff
            let app1: [UInt8] = [0xFF, 0xE1, 0, UInt8(2 + exif.count)] + exif
            XCTAssertEqual(1, ExifOrientation.readJpeg([0xFF, 0xD8] + app1 + [0xFF, 0xD9]))
        }
    }
}

final class Utf8PieceBufferTest: XCTestCase {
    func testOnlyCompleteCharactersLeave() {
        let b = Utf8PieceBuffer()
        let zh = Array("你好".utf8)  // 6 bytes
        XCTAssertEqual("", b.push(Array(zh[0..<2])))
        XCTAssertEqual("你", b.push(Array(zh[2..<4])))
        XCTAssertEqual("好!", b.push(Array(zh[4..<6]) + Array("!".utf8)))
        let emoji = Array("🙂".utf8)
        XCTAssertEqual("a", b.push(Array("a".utf8) + Array(emoji[0..<3])))
        XCTAssertEqual("🙂", b.push(Array(emoji[3..<4])))
        XCTAssertEqual("", b.push([0xE4]))
        XCTAssertEqual("\u{FFFD}", b.flush())
        XCTAssertEqual("\u{FFFD}x", b.push([0xFF, UInt8(ascii: "x")]))
    }
}

final class NeutralizeTest: XCTestCase {
    private let added = ["<|turn_end|>", "<|role_start|>", "<|eos|>", "<|image_start|>"]

    func testOrdinaryTextIsUnchanged() {
        for t in ["hello", "你好", "a < b | c > d", "<|unknown|>", "🙂<|turn_end"] {
            XCTAssertEqual(t, Neutralize.apply(t, added))
        }
    }

    func testEveryOccurrenceIsBroken() {
        let out = Neutralize.apply("x<|turn_end|><|<|eos|>|>", added)
        XCTAssertEqual("x<\u{2060}|turn_end|><|<\u{2060}|eos|>|>", out)
        XCTAssertTrue(added.allSatisfy { !out.contains($0) })
    }

    func testReadsAddedTokensFromTokenizerJson() throws {
        let json = #"{"added_tokens": [{"id": 1, "content": "<|eos|>", "special": true}, {"id": 2, "content": "<|x|>", "special": false}]}"#
        XCTAssertEqual(["<|eos|>", "<|x|>"], try Neutralize.addedTokens(json))
    }
}

final class ManifestTest: XCTestCase {
    private let sha = String(repeating: "a", count: 64)

    private func manifest(programFile: String = "model.pte", backend: String = "xnnpack", schema: Int = 1,
                          extra: String = "", encoderBackend: String? = nil) -> String {
        """
        {"schema_version": \(schema), "model_id": "Infinigence/Megrez-3B-Omni", "recipe": {"name": "xnnpack-8da4w"},
         "program": {"file": {"file": "\(programFile)", "bytes": 3, "sha256": "\(sha)"}, "backend": "\(backend)",
                     "methods": [{"name": "token_embedding", "backend": "portable"}, {"name": "text_decoder", "backend": "\(backend)"},
                                 {"name": "vision_encoder", "backend": "\(encoderBackend ?? backend)"}], "constants": {} \(extra)},
         "tokenizer": {"file": "tokenizer.json", "bytes": 5, "sha256": "\(sha)"},
         "front_end": {"stop_ids": [5, 0], "default_system_prompt": "sys", "special_token_ids": {},
                       "preprocessor_config": {"scale_resolution": 448, "max_slice_nums": 9, "patch_size": 14}},
         "context": {"max_context": 4096, "max_seq_len": 1024}, "versions": {"executorch": "1.5.1"}}
        """
    }

    func testReadsEveryFieldTheAppUses() throws {
        let m = try BundleManifest.parse(manifest())
        XCTAssertEqual("model.pte", m.program.file)
        XCTAssertEqual(4096, m.maxContext)
        XCTAssertEqual(1024, m.maxSeqLen)
        XCTAssertEqual([5, 0], m.stopIds)
        XCTAssertEqual("sys", m.frontEnd.defaultSystemPrompt)
        XCTAssertEqual("1.5.1", m.executorchVersion)
        XCTAssertEqual([], BundleCheck.refusals(m, ["model.pte", "tokenizer.json", "manifest.json"]))
    }

    func testFileNamesMustStayInsideTheBundle() {
        for bad in ["../model.pte", "/etc/passwd", "sub/model.pte", ".hidden", ".."] {
            XCTAssertThrowsError(try BundleManifest.parse(manifest(programFile: bad))) { e in
                XCTAssertEqual("program.file.file", (e as? ManifestError)?.field)
            }
        }
    }

    func testErrorsNameTheFieldAndTheFix() {
        XCTAssertThrowsError(try BundleManifest.parse(manifest().replacingOccurrences(of: "\"max_seq_len\": 1024",
                                                                                       with: "\"x\": 1"))) { e in
            XCTAssertEqual("context.max_seq_len", (e as? ManifestError)?.field)
            XCTAssertTrue((e as? ManifestError)?.message.contains("re-export") ?? false)
        }
        XCTAssertThrowsError(try BundleManifest.parse(manifest(schema: 2))) { e in
            XCTAssertEqual("schema_version", (e as? ManifestError)?.field)
        }
        XCTAssertThrowsError(try BundleManifest.parse("not json")) { e in XCTAssertTrue(e is ManifestError) }
    }

    func testRefusesWhatTheAppCannotRun() throws {
        let vulkan = try BundleManifest.parse(manifest(backend: "vulkan"))
        let refusals = BundleCheck.refusals(vulkan, [])
        XCTAssertEqual(1, refusals.count)
        XCTAssertTrue(refusals[0].contains("vulkan"))
        let ptd = try BundleManifest.parse(manifest(extra: ", \"data_files\": [\"model.ptd\"]"))
        XCTAssertEqual(1, BundleCheck.refusals(ptd, []).count)
        XCTAssertTrue(BundleCheck.refusals(ptd, [])[0].contains(".ptd"))
        XCTAssertTrue(BundleCheck.versionWarning("1.6.0", "1.5.1")?.contains("newer") ?? false)
        XCTAssertNil(BundleCheck.versionWarning("1.5.1+cpu", "1.5.1"))
        XCTAssertNil(BundleCheck.versionWarning("1.4.1", "1.5.1"))
    }

    /// iOS only: Core ML bundles run here (the AAR refuses them), and the app can tell which encoders use Core ML.
    func testCoreMLEncodersAreAcceptedAndFound() throws {
        let coreml = try BundleManifest.parse(manifest(encoderBackend: "coreml"))
        XCTAssertEqual([], BundleCheck.refusals(coreml, []))
        XCTAssertEqual(["vision_encoder"], BundleCheck.coreMLEncoders(coreml))
        XCTAssertEqual([], BundleCheck.coreMLEncoders(try BundleManifest.parse(manifest())))
    }

    func testChecksumsAreStreamedAndVerified() throws {
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        XCTAssertEqual(abc, Checksums.sha256(Data("abc".utf8)))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bundle-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data("abc".utf8).write(to: dir.appendingPathComponent("model.pte"))
        try Data("12345".utf8).write(to: dir.appendingPathComponent("tokenizer.json"))
        let ok = try BundleManifest.parse(manifest().replacingOccurrences(of: "\"\(sha)\"}, \"backend\"",
                                                                          with: "\"\(abc)\"}, \"backend\""))
        XCTAssertEqual(["tokenizer.json: sha256 differs from the manifest (corrupted or modified)"],
                       Checksums.verifyBundle(dir, ok))
        try Data("ab".utf8).write(to: dir.appendingPathComponent("model.pte"))
        let problems = Checksums.verifyBundle(dir, ok)
        XCTAssertEqual(1, problems.count)
        XCTAssertTrue(problems[0].hasPrefix("model.pte: 2 bytes"))
    }

    /// FIPS 180-4 examples, and every padding length around a block boundary against a one-shot hash.
    func testSha256MatchesTheStandard() throws {
        XCTAssertEqual("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", Checksums.sha256(Data()))
        XCTAssertEqual("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
                       Checksums.sha256(Data("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)))
        let million = Data(repeating: UInt8(ascii: "a"), count: 1_000_000)
        XCTAssertEqual("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0", Checksums.sha256(million))
        // Streamed in uneven pieces (through the pending-block path) gives the same digest.
        var hasher = SHA256()
        var offset = 0
        var piece = 1
        while offset < million.count {
            let end = min(million.count, offset + piece)
            hasher.update(million.subdata(in: offset..<end))
            offset = end
            piece = piece * 3 + 7
        }
        XCTAssertEqual("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0", hasher.hexDigest())
    }
}

final class BenchmarkOptionsTest: XCTestCase {
    func testParsesTheAgentsArguments() throws {
        XCTAssertEqual(BenchmarkOptions(), try BenchmarkOptions.parse([]))
        let o = try BenchmarkOptions.parseExtra(#"["--reps","3","--warmup","0","--prefill","32,64","--decode","8","--decode-contexts","64,1024","--audio-seconds","2.5","--no-per-op","--threads","4"]"#)
        XCTAssertEqual(BenchmarkOptions(reps: 3, warmup: 0, threads: 4, prefillLengths: [32, 64], decodeTokens: 8,
                                        decodeContexts: [64, 1024], audioSeconds: 2.5, perOp: false, topOps: 15), o)
        let quick = try BenchmarkOptions.parse(["--quick", "--reps", "1"])
        XCTAssertEqual(BenchmarkOptions(reps: 1, warmup: 1, threads: nil, prefillLengths: [16, 64], decodeTokens: 16,
                                        decodeContexts: [], audioSeconds: 5.0, perOp: true, topOps: 15), quick)
        XCTAssertThrowsError(try BenchmarkOptions.parse(["--bogus"]))
        XCTAssertThrowsError(try BenchmarkOptions.parse(["--reps", "x"]))
    }

    func testStatsAreWrittenAsTheAgentWritesThem() throws {
        let s = try Stat("tok/s", "higher", [3.0, 1.0, 2.0, 10.0])
        XCTAssertEqual(2.5, s.median)
        XCTAssertEqual(["median", "min", "max", "spread", "n", "unit", "better", "samples"], s.toJson().keys)
        let stats = try AnswerStats.fromRunnerJson("""
            {"inference_start_ms": 1000, "prompt_eval_end_ms": 1500, "first_token_ms": 1500,
             "inference_end_ms": 3500, "num_prompt_tokens": 100, "num_generated_tokens": 40}
            """)
        XCTAssertEqual(500, stats.timeToFirstTokenMs)
        XCTAssertEqual(200.0, stats.prefillTokPerS)
        XCTAssertEqual(20.0, stats.decodeTokPerS)
    }
}

final class JsonTest: XCTestCase {
    func testCanonicalIsPythonsFormat() throws {
        let v: [String: Any?] = ["b": [1, 2], "a": "é\n\u{2060}\"", "c": [String: Any?](), "d": nil, "e": true]
        XCTAssertEqual("{\n \"a\": \"\\u00e9\\n\\u2060\\\"\",\n \"b\": [\n  1,\n  2\n ],\n \"c\": {},\n \"d\": null,\n \"e\": true\n}\n",
                       try Json.canonical(v))
        guard let back = try Json.parse(try Json.canonical(v)) as? JsonMap else { return XCTFail("not an object") }
        XCTAssertEqual("\u{00e9}\n\u{2060}\"", back["a"] as? String)
        XCTAssertEqual([1, 2], (back["b"] as? [Any?])?.compactMap { $0 as? Int64 })
        XCTAssertEqual(true, back["e"] as? Bool)
        XCTAssertTrue(back.containsKey("d") && back["d"] == nil)
    }

    /// Python's ensure_ascii writes astral characters as a surrogate pair; the parser joins them up again.
    func testAstralCharactersRoundTrip() throws {
        XCTAssertEqual("\"\\ud83d\\ude42\"\n", try Json.canonical("🙂"))
        XCTAssertEqual("🙂", try Json.parse("\"\\ud83d\\ude42\"") as? String)
        XCTAssertEqual("[1.0, 0.1, 1e-05, 2.5]", try Json.compact([1.0, 0.1, 0.00001, 2.5]))
    }
}
