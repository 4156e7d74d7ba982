import Foundation
@testable import MegrezCore

/// Where the Python SDK's vectors are: MEGREZ_VECTORS, or tests/vectors/front_end of this repository, found from this
/// file's own path (ios_demo/MegrezCore/Tests/MegrezCoreTests/TestSupport.swift), so `swift test` needs no copy step
/// on macOS or Linux. (Kotlin twin: the `megrez.vectors` system property, set by Gradle and by CI.)
enum Vectors {
    static let testsDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()

    static let root: URL = {
        if let env = ProcessInfo.processInfo.environment["MEGREZ_VECTORS"], !env.isEmpty {
            return URL(fileURLWithPath: env)
        }
        return testsDir.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("tests/vectors/front_end")
    }()

    /// Pillow's decoding of the vectors' JPEG inputs, stored orientation (Fixtures/README.md).
    static let decodedJpegs = testsDir.appendingPathComponent("Fixtures/decoded")

    static func bytes(_ url: URL) throws -> [UInt8] { [UInt8](try Data(contentsOf: url)) }

    static func text(_ url: URL) throws -> String {
        guard let s = String(data: try Data(contentsOf: url), encoding: .utf8) else {
            throw FieldError(url.path, "is not UTF-8")
        }
        return s
    }

    static func caseDirs() throws -> [URL] {
        let dir = root.appendingPathComponent("cases")
        return try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
            .map { dir.appendingPathComponent($0) }
            .filter { var d: ObjCBool = false; return FileManager.default.fileExists(atPath: $0.path, isDirectory: &d) && d.boolValue }
    }

    private static var planCache: [String: RunnerPlan] = [:]

    /// The core's plan for a case's request.json (cached: several tests read the same plans).
    static func plan(_ caseDir: URL) throws -> RunnerPlan {
        if let p = planCache[caseDir.path] { return p }
        let p = try planRequest(caseDir.appendingPathComponent("request.json"))
        planCache[caseDir.path] = p
        return p
    }
}

/// Kotlin twin: cli/PlanCli.kt `planRequest` (there with javax.imageio decoding; here PNG through PngDecoder and the
/// JPEGs through their Pillow-decoded fixtures, then the core's EXIF orientation from the JPEG's own bytes).
func planRequest(_ requestFile: URL) throws -> RunnerPlan {
    let request = try JsonObject.parse(try Vectors.text(requestFile), requestFile.path)
    let base = requestFile.deletingLastPathComponent()
    let frontEnd = try FrontEndConfig.fromJson(try request.obj("front_end"))
    let added = try request.list("added_tokens").map { v -> String in
        guard let s = v as? String else { throw FieldError("added_tokens", "must hold strings") }
        return s
    }
    let messages = try request.list("messages").map { raw -> ChatMessage in
        guard let m = raw as? JsonMap else { throw FieldError("messages", "must hold objects") }
        let message = JsonObject(m, "messages")
        let content: Content
        if let text = m["content"] as? String {
            content = Content(text: text)
        } else {
            let o = try message.obj("content")
            let image = try o.stringOrNull("image").map { try decodeImage(base.appendingPathComponent($0)) }
            let audio = try o.stringOrNull("audio").map { try decodeWav(base.appendingPathComponent($0), frontEnd) }
            content = Content(text: try o.stringOrNull("text"), image: image, audio16k: audio)
        }
        return ChatMessage(try message.string("role"), content)
    }
    var continuation: Continuation? = nil
    if request.has("continuation") {
        let c = try request.obj("continuation")
        continuation = Continuation(imagesBefore: try c.int("images_before"), audioBefore: try c.int("audio_before"),
                                    pendingAnswer: try c.string("pending_answer"))
    }
    return try RunnerPlanner(frontEnd, added).plan(messages, continuation)
}

func decodePng(_ url: URL) throws -> RgbImage {
    let png = try PngDecoder.decodeRgb(try Vectors.bytes(url))
    return try RgbImage(png.width, png.height, png.rgb)
}

private func decodeImage(_ file: URL) throws -> RgbImage {
    let bytes = try Vectors.bytes(file)
    let ext = file.pathExtension.lowercased()
    let isJpeg = ext == "jpg" || ext == "jpeg"
    let stored = try isJpeg ? decodePng(Vectors.decodedJpegs.appendingPathComponent(file.lastPathComponent + ".png"))
                            : decodePng(file)
    return ExifOrientation.apply(stored, ExifOrientation.readJpeg(bytes))
}

private func decodeWav(_ file: URL, _ frontEnd: FrontEndConfig) throws -> [Float] {
    let wav = try WavAudio.parse(try Vectors.bytes(file))
    return try AudioPrep.toModelRate(wav.mono, wav.sampleRate, frontEnd.audio, file.lastPathComponent)
}
