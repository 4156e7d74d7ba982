import Foundation

// The bundle's manifest.json (megrez_mobile/bundle.py `Manifest`), every field the app reads, typed.
//
// Parsing never trusts a file name: each must be a plain name inside the bundle folder (no '/', '\', "..",
// no leading '.'), so a hostile manifest cannot make the app read or hash a file outside the bundle.

public struct FileEntry: Equatable {
    public let file: String
    public let bytes: Int64
    public let sha256: String
}

public struct MethodEntry: Equatable {
    public let name: String
    public let backend: String
}

public struct BundleManifest {
    public let schemaVersion: Int
    public let modelId: String
    public let recipeName: String
    public let backend: String
    public let program: FileEntry
    public let tokenizer: FileEntry
    public let methods: [MethodEntry]
    public let maxContext: Int
    public let maxSeqLen: Int
    public let stopIds: [Int64]
    public let frontEnd: FrontEndConfig
    public let executorchVersion: String
    /// External weight files (.ptd) the program needs; this app's runner path loads a self-contained .pte only.
    public let dataFiles: [String]
    /// program.constants.get_vocab_size, when the exporter wrote it (the benchmark draws token ids below it).
    public let vocabSize: Int?

    public var files: [FileEntry] { [program, tokenizer] }
    public var methodNames: Set<String> { Set(methods.map { $0.name }) }

    public static let SCHEMA_VERSION = 1
    public static let FILE_NAME = "manifest.json"

    public static func parse(_ text: String) throws -> BundleManifest {
        do {
            return try fromJson(try JsonObject.parse(text, FILE_NAME))
        } catch let e as FieldError {
            throw ManifestError(e.field, "\(e.problem); re-export the bundle with megrez-mobile export")
        }
    }

    private static func fromJson(_ m: JsonObject) throws -> BundleManifest {
        let schema = try m.int("schema_version")
        if schema != SCHEMA_VERSION {
            throw ManifestError("schema_version", "is \(schema), this app reads \(SCHEMA_VERSION); export the bundle " +
                                "with a megrez-mobile version that writes schema \(SCHEMA_VERSION), or update the app")
        }
        let program = try m.obj("program")
        let context = try m.obj("context")
        let frontEnd = try m.obj("front_end")
        let methods = try program.objects("methods").map { MethodEntry(name: try $0.string("name"),
                                                                       backend: try $0.string("backend")) }
        let dataFiles = ((program.raw["data_files"] as? [Any?]) ?? []).map { v -> String in
            guard let v = v else { return "null" }
            return "\(v)"
        }
        let stopIds = try frontEnd.list("stop_ids").enumerated().map { (i, v) -> Int64 in
            guard let n = v as? Int64 else { throw FieldError("front_end.stop_ids[\(i)]", "must be an integer") }
            return n
        }
        let constants = try program.obj("constants")
        let manifest = BundleManifest(
            schemaVersion: schema,
            modelId: try m.string("model_id"),
            recipeName: try m.obj("recipe").stringOrNull("name") ?? "?",
            backend: try program.string("backend"),
            program: try fileEntry(try program.obj("file")),
            tokenizer: try fileEntry(try m.obj("tokenizer")),
            methods: methods,
            maxContext: try context.int("max_context"),
            maxSeqLen: try context.int("max_seq_len"),
            stopIds: stopIds,
            frontEnd: try FrontEndConfig.fromJson(frontEnd),
            executorchVersion: try m.obj("versions").string("executorch"),
            dataFiles: try dataFiles.map { try plainFileName($0, "program.data_files") },
            vocabSize: try constants.has("get_vocab_size") ? constants.int("get_vocab_size") : nil)
        try manifest.check()
        return manifest
    }

    private static func fileEntry(_ o: JsonObject) throws -> FileEntry {
        let sha = try o.string("sha256")
        let hex = sha.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
        if sha.utf8.count != 64 || !hex { throw FieldError("\(o.path).sha256", "must be 64 lowercase hex digits") }
        let bytes = try o.long("bytes")
        if bytes < 0 { throw FieldError("\(o.path).bytes", "must not be negative") }
        return FileEntry(file: try plainFileName(try o.string("file"), "\(o.path).file"), bytes: bytes, sha256: sha)
    }

    /// A file name from the manifest, accepted only when it names a file directly inside the bundle.
    public static func plainFileName(_ name: String, _ field: String) throws -> String {
        let bad = name.isEmpty || name.hasPrefix(".") ||
            name.utf16.contains { $0 == 0x2F || $0 == 0x5C || $0 < 0x20 } || name.utf16.count > 255
        if bad {
            throw ManifestError(field, "is \"\(name)\"; bundle files must be plain names inside the bundle folder " +
                                "(no folders, no leading '.'): re-export the bundle, do not edit its manifest")
        }
        return name
    }

    private func check() throws {
        for required in ["token_embedding", "text_decoder"] where !methodNames.contains(required) {
            throw ManifestError("program.methods", "has no \(required) method; this is not a Megrez bundle for the " +
                                "multimodal runner: re-export it with megrez-mobile export")
        }
        if maxSeqLen < 1 || maxContext < maxSeqLen {
            throw ManifestError("context", "max_seq_len \(maxSeqLen) and max_context \(maxContext) are inconsistent; " +
                                "re-export the bundle")
        }
    }
}

/// A manifest field is missing or wrong: `field` names it, the message says how to fix it.
public struct ManifestError: Error, LocalizedError, CustomStringConvertible {
    public let field: String
    public let fix: String

    public init(_ field: String, _ fix: String) {
        self.field = field
        self.fix = fix
    }

    public var message: String { "manifest.json: \(field) \(fix)" }
    public var description: String { message }
    public var errorDescription: String? { message }
}
