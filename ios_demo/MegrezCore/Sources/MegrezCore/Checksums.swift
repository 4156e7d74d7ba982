import Foundation

/// Streamed sha256 and the bundle check the app runs before loading (megrez_mobile/bundle.py `verify_files`).
public enum Checksums {
    private static let BLOCK = 1 << 20

    /// sha256 of everything `input` yields, in 1 MiB blocks (a 3 GB .pte never sits in memory); `progress(bytesSoFar)`.
    public static func sha256(_ input: FileHandle, progress: (Int64) -> Void = { _ in }) -> String {
        var digest = SHA256()
        var total: Int64 = 0
        while true {
            // autoreleasepool exists only on Apple platforms; each block's Data is released when the loop turns.
            let chunk = input.readData(ofLength: BLOCK)
            if chunk.isEmpty { break }
            digest.update(chunk)
            total += Int64(chunk.count)
            progress(total)
        }
        return digest.hexDigest()
    }

    public static func sha256(_ data: Data) -> String { SHA256.hex(data) }

    public static func sha256(file: URL, progress: (Int64) -> Void = { _ in }) throws -> String {
        let handle = try FileHandle(forReadingFrom: file)
        defer { handle.closeFile() }
        return sha256(handle, progress: progress)
    }

    /// Size of a regular file, or nil when there is none at `url` (missing, or a folder).
    static func regularFileSize(_ url: URL) -> Int64? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), !isDirectory.boolValue,
              let attributes = try? FileManager.default.attributesOfItem(atPath: url.path),
              let size = attributes[.size] as? NSNumber else { return nil }
        return size.int64Value
    }

    /// Problems with the bundle's files, one readable line each (empty: all good). Sizes first for every file (cheap),
    /// then checksums only when every size is right.
    public static func verifyBundle(_ dir: URL, _ manifest: BundleManifest, checksums: Bool = true,
                                    progress: (_ file: String, _ done: Int64, _ total: Int64) -> Void = { _, _, _ in })
        -> [String] {
        var problems: [String] = []
        for entry in manifest.files {
            let f = dir.appendingPathComponent(entry.file)
            if let size = regularFileSize(f) {
                if size != entry.bytes {
                    problems.append("\(entry.file): \(size) bytes, the manifest says \(entry.bytes) (truncated or replaced)")
                }
            } else {
                problems.append("\(entry.file): missing")
            }
        }
        if !problems.isEmpty || !checksums { return problems }
        for entry in manifest.files {
            let actual: String
            do {
                actual = try sha256(file: dir.appendingPathComponent(entry.file)) { done in
                    progress(entry.file, done, entry.bytes)
                }
            } catch {
                problems.append("\(entry.file): cannot be read (\(error.localizedDescription))")
                continue
            }
            if actual != entry.sha256 {
                problems.append("\(entry.file): sha256 differs from the manifest (corrupted or modified)")
            }
        }
        return problems
    }
}
