import Foundation
import XCTest
@testable import MegrezCore

/// The Python SDK's vectors (tests/vectors/front_end, `python -m megrez_mobile.processing.vectors`) against the core.
/// Kotlin twin: android_demo/core/src/test/kotlin/dev/megrezmobile/core/VectorsTest.kt, test for test.
final class VectorsTest: XCTestCase {
    /// Every case the SDK writes, by name: testEveryCaseIsKnown fails when the vectors gain or lose one, and
    /// tests/test_ios_sources.py checks this list against tests/vectors/front_end/cases.
    static let EXPECTED_CASES = [
        "continuation", "exif_rotated", "long_audio", "sample_image_audio", "small_rgba", "small_upscaled",
        "special_text", "square", "stereo_audio", "tall", "text_only", "tiny_images_two_turns", "wide",
    ]

    func testEveryCaseIsKnown() throws {
        XCTAssertEqual(try Vectors.caseDirs().map { $0.lastPathComponent }, VectorsTest.EXPECTED_CASES,
                       "the vector cases in \(Vectors.root.path) differ from EXPECTED_CASES")
    }

    func testEveryCaseGivesPythonsPlanByteForByte() throws {
        let cases = try Vectors.caseDirs()
        XCTAssertGreaterThanOrEqual(cases.count, 10, "expected the vector cases in \(Vectors.root.path)")
        for c in cases {
            let plan = try Vectors.plan(c)
            let expected = try Vectors.text(c.appendingPathComponent("plan.json"))
            XCTAssertEqual(expected, try Json.canonical(plan.toJson()), "case \(c.lastPathComponent)")
        }
    }

    func testSlicePixelsMatchPillowWithinOne() throws {
        var compared = 0
        var worst = 0
        for c in try Vectors.caseDirs() {
            let pixelsDir = c.appendingPathComponent("pixels")
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: pixelsDir.path) else { continue }
            let plan = try Vectors.plan(c)
            for name in names.sorted() where name.hasSuffix(".png") {
                let k = Int(name.dropFirst("input".count).dropLast(".png".count))!
                guard case .image(let input) = plan.inputs[k] else {
                    XCTFail("\(c.lastPathComponent)/\(name): runner input \(k) is not an image")
                    continue
                }
                let mine = input.pixels
                let ref = try decodePng(pixelsDir.appendingPathComponent(name))
                XCTAssertEqual([ref.width, ref.height], [mine.width, mine.height], "\(c.lastPathComponent)/\(name) size")
                if ref.width != mine.width || ref.height != mine.height { continue }
                for i in 0..<ref.pixels.count {
                    let d = abs(Int(ref.pixels[i]) - Int(mine.pixels[i]))
                    if d > worst { worst = d }
                    if d > 1 {
                        let p = i / 3
                        XCTFail("\(c.lastPathComponent)/\(name) pixel (\(p % ref.width), \(p / ref.width)) channel " +
                                "\(i % 3) differs by \(d)")
                        return
                    }
                }
                compared += 1
            }
        }
        XCTAssertGreaterThanOrEqual(compared, 12, "only \(compared) slice images compared")
        print("slice pixels: \(compared) images, largest difference \(worst)")
    }

    func testSliceGeometryMatchesForEverySize() throws {
        guard let rows = try Json.parse(try Vectors.text(Vectors.root.appendingPathComponent("geometry.json"))) as? [Any?]
        else { return XCTFail("geometry.json is not a list") }
        XCTAssertGreaterThan(rows.count, 1000)
        for r in rows {
            let row = (r as? [Any?] ?? []).compactMap { $0 as? Int64 }.map { Int($0) }
            guard row.count == 8 else { XCTFail("bad geometry row \(String(describing: r))"); continue }
            let (w, h) = (row[0], row[1])
            let l = try SliceGeometry.layout(w, h)
            let got = [w, h, l.source.width, l.source.height, l.grid?.cols ?? 0, l.grid?.rows ?? 0,
                       l.slice?.width ?? 0, l.slice?.height ?? 0]
            XCTAssertEqual(row, got, "geometry of \(w)x\(h)")
        }
    }

    func testAudioLengthsClipsAndTokensMatch() throws {
        guard let rows = try Json.parse(try Vectors.text(Vectors.root.appendingPathComponent("audio_lengths.json")))
            as? [Any?] else { return XCTFail("audio_lengths.json is not a list") }
        XCTAssertGreaterThan(rows.count, 100)
        let cfg = AudioConfig()
        func ints(_ v: Any?) -> [Int] { (v as? [Any?] ?? []).compactMap { $0 as? Int64 }.map { Int($0) } }
        for item in rows {
            guard let r = item as? [Any?], r.count == 6 else { XCTFail("bad row \(String(describing: item))"); continue }
            let n = Int(r[0] as! Int64)
            let rate = Int(r[1] as! Int64)
            let got: Int
            do {
                got = try AudioPrep.checkedModelLength(n, rate, cfg)
            } catch let e as AudioInputError {
                XCTAssertEqual(r[2] as? String, e.kind, "length of \(n) samples at \(rate) Hz")
                continue
            }
            XCTAssertEqual((r[2] as? Int64).map { Int($0) }, got, "length of \(n) samples at \(rate) Hz")
            let clips = try AudioPrep.splitClips(got, cfg)
            XCTAssertEqual(ints(r[3]), clips.map { $0.samples }, "clips of \(n) @ \(rate)")
            XCTAssertEqual(ints(r[4]), clips.map { $0.melFrames }, "mel frames of \(n) @ \(rate)")
            XCTAssertEqual(ints(r[5]), clips.map { $0.tokens }, "tokens of \(n) @ \(rate)")
        }
    }

    func testResamplerStaysCloseToSoxr() throws {
        for name in ["stereo_44k_0p4s", "long_8k_31s_u8"] {
            let wav = try WavAudio.parse(try Vectors.bytes(Vectors.root.appendingPathComponent("inputs/\(name).wav")))
            let mine = try AudioPrep.toModelRate(wav.mono, wav.sampleRate)
            let bytes = try Vectors.bytes(Vectors.root.appendingPathComponent("resampled/\(name).f32"))
            let ref = (0..<bytes.count / 4).map { k -> Float in
                let i = 4 * k
                return Float(bitPattern: UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 |
                             UInt32(bytes[i + 3]) << 24)
            }
            XCTAssertEqual(AudioPrep.resampledLength(wav.mono.count, wav.sampleRate), mine.count)
            // Compare away from the ends (both resamplers treat the outside as silence, with different filters).
            var signal = 0.0
            var noise = 0.0
            for i in 200..<(ref.count - 200) {
                signal += Double(ref[i]) * Double(ref[i])
                let d = Double(ref[i] - mine[i])
                noise += d * d
            }
            let snr = 10 * log10(signal / noise)
            print("resampler vs soxr_hq, \(name): SNR \(String(format: "%.1f", snr)) dB")
            XCTAssertGreaterThan(snr, 60, "\(name): SNR \(snr) dB against soxr_hq")
        }
    }

    func testExifOrientationIsReadFromTheJpeg() throws {
        let inputs = Vectors.root.appendingPathComponent("inputs")
        XCTAssertEqual(6, ExifOrientation.readJpeg(try Vectors.bytes(inputs.appendingPathComponent("exif_rot6_160x96.jpg"))))
        XCTAssertEqual(1, ExifOrientation.readJpeg(try Vectors.bytes(inputs.appendingPathComponent("sample_image.jpg"))))
        XCTAssertEqual(1, ExifOrientation.readJpeg(try Vectors.bytes(inputs.appendingPathComponent("tiny_1x1.png"))))
    }
}
