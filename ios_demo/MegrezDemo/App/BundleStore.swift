import Foundation
import MegrezCore

/// A bundle folder in the app's Documents (filled by the Files app / Finder through file sharing, or by Import…).
struct InstalledBundle: Identifiable, Equatable {
    let dir: URL
    let manifest: BundleManifest
    var id: URL { dir }
    var name: String { dir.lastPathComponent }
    /// Encoders lowered to Core ML (the `coreml-encoders` recipe), from the manifest.
    var coreMLEncoders: [String] { BundleCheck.coreMLEncoders(manifest) }

    static func == (a: InstalledBundle, b: InstalledBundle) -> Bool { a.dir == b.dir }
}

/// What is wrong with a bundle, in words that say what to do.
struct BundleProblem: LocalizedError {
    let message: String
    var errorDescription: String? { message }
}

enum BundleStore {
    /// The ExecuTorch version of the Swift package this app links (project.yml pins the swiftpm-1.5.0 head).
    static let appExecuTorchVersion = "1.5.0"

    static var documents: URL { FileManager.default.urls(for: .documentDirectory, in: .userDomainMask)[0] }

    /// Every folder in Documents whose manifest.json parses (others are skipped: they are not bundles).
    static func installed() -> [InstalledBundle] {
        let fm = FileManager.default
        let dirs = (try? fm.contentsOfDirectory(at: documents, includingPropertiesForKeys: [.isDirectoryKey])) ?? []
        return dirs.compactMap { dir in
            guard let text = try? String(contentsOf: dir.appendingPathComponent(BundleManifest.FILE_NAME), encoding: .utf8),
                  let manifest = try? BundleManifest.parse(text) else { return nil }
            return InstalledBundle(dir: dir, manifest: manifest)
        }.sorted { $0.name < $1.name }
    }

    /// The bundle to open first: one whose encoders run on Core ML when there is one (Neural Engine / GPU), else
    /// the first by name.
    static func preferred(_ bundles: [InstalledBundle]) -> InstalledBundle? {
        bundles.first { !$0.coreMLEncoders.isEmpty } ?? bundles.first
    }

    /// Copies the files a picked bundle folder's manifest lists into Documents/<folder name>, after checking free
    /// space; `progress` goes from 0 to 1. The folder comes from the document picker (security-scoped).
    static func importFolder(_ source: URL, progress: @escaping (Double) -> Void) throws -> URL {
        let scoped = source.startAccessingSecurityScopedResource()
        defer { if scoped { source.stopAccessingSecurityScopedResource() } }
        let manifestText: String
        do {
            manifestText = try String(contentsOf: source.appendingPathComponent(BundleManifest.FILE_NAME), encoding: .utf8)
        } catch {
            throw BundleProblem(message: "\(source.lastPathComponent) has no manifest.json: pick the folder that " +
                                "megrez-mobile export wrote")
        }
        let manifest = try BundleManifest.parse(manifestText)
        let total = manifest.files.reduce(Int64(0)) { $0 + $1.bytes }
        let free = (try? documents.resourceValues(forKeys: [.volumeAvailableCapacityForImportantUsageKey]))?
            .volumeAvailableCapacityForImportantUsage ?? Int64.max
        if total + 64 * 1_048_576 > free {
            throw BundleProblem(message: "the bundle needs \(total / 1_048_576) MB and the phone has " +
                                "\(free / 1_048_576) MB free: free some space, then import again")
        }
        let target = documents.appendingPathComponent(source.lastPathComponent)
        try? FileManager.default.removeItem(at: target)
        try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
        var copied: Int64 = 0
        for entry in manifest.files {
            try copyFile(source.appendingPathComponent(entry.file), target.appendingPathComponent(entry.file)) { n in
                copied += n
                progress(total > 0 ? Double(copied) / Double(total) : 1)
            }
        }
        try manifestText.write(to: target.appendingPathComponent(BundleManifest.FILE_NAME), atomically: true,
                               encoding: .utf8)
        return target
    }

    /// 8 MiB at a time: a 3 GB model.pte never sits in memory.
    private static func copyFile(_ from: URL, _ to: URL, copiedBytes: (Int64) -> Void) throws {
        guard FileManager.default.createFile(atPath: to.path, contents: nil) else {
            throw BundleProblem(message: "cannot write \(to.lastPathComponent) into the app's storage")
        }
        let input = try FileHandle(forReadingFrom: from)
        defer { try? input.close() }
        let output = try FileHandle(forWritingTo: to)
        defer { try? output.close() }
        while true {
            let chunk = try autoreleasepool { try input.read(upToCount: 8 << 20) ?? Data() }
            if chunk.isEmpty { break }
            try output.write(contentsOf: chunk)
            copiedBytes(Int64(chunk.count))
        }
    }

    /// Everything the app checks before loading: the runtime can run it (backends, no .ptd), then sizes and
    /// sha256 of every file. Returns warnings (a newer ExecuTorch); throws the refusals.
    static func verify(_ bundle: InstalledBundle, progress: @escaping (String, Double) -> Void) throws -> [String] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: bundle.dir.path)) ?? []
        let refusals = BundleCheck.refusals(bundle.manifest, files)
        if !refusals.isEmpty { throw BundleProblem(message: refusals.joined(separator: "\n")) }
        let problems = Checksums.verifyBundle(bundle.dir, bundle.manifest) { file, done, total in
            progress(file, total > 0 ? Double(done) / Double(total) : 1)
        }
        if !problems.isEmpty {
            throw BundleProblem(message: problems.joined(separator: "\n") + "\nCopy the bundle again.")
        }
        return [BundleCheck.versionWarning(bundle.manifest.executorchVersion, appExecuTorchVersion)].compactMap { $0 }
    }
}
