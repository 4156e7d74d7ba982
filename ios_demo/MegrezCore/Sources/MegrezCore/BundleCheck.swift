import Foundation

/// Whether this app's runtime can run a bundle at all: said before loading, in words that say what to do.
public enum BundleCheck {
    /// Backends the iOS app links (ExecuTorch's Swift package products backend_xnnpack and backend_coreml) plus
    /// ExecuTorch's CPU kernels. (Kotlin: AAR_BACKENDS, the Android AAR's XNNPACK flavour, has no Core ML.)
    public static let APP_BACKENDS: Set<String> = ["xnnpack", "coreml", "portable"]

    public static func refusals(_ manifest: BundleManifest, _ filesInBundle: [String]) -> [String] {
        var out: [String] = []
        let foreign = manifest.methods.filter { !APP_BACKENDS.contains($0.backend) }
        if !foreign.isEmpty {
            let backends = Set(foreign.map { $0.backend }).sorted().joined(separator: ", ")
            out.append("this bundle needs the \(backends) backend (methods " +
                       "\(foreign.map { $0.name }.joined(separator: ", "))), which this app's ExecuTorch library does " +
                       "not contain: export it with the xnnpack-8da4w or coreml-encoders recipe")
        }
        let ptd = Set(manifest.dataFiles + filesInBundle.filter { $0.hasSuffix(".ptd") }).sorted()
        if !ptd.isEmpty {
            out.append("this bundle keeps weights in \(ptd.joined(separator: ", ")); this app loads a self-contained " +
                       "model.pte only, so export one with no external weights")
        }
        return out
    }

    /// A warning when the bundle was made by a newer ExecuTorch than the app's (no compatibility promise that way).
    public static func versionWarning(_ bundleVersion: String, _ appVersion: String) -> String? {
        let b = numbers(bundleVersion)
        let a = numbers(appVersion)
        for i in 0..<max(a.count, b.count) {
            let x = i < b.count ? b[i] : 0
            let y = i < a.count ? a[i] : 0
            if x != y {
                return x > y ? "this bundle was exported with ExecuTorch \(bundleVersion), newer than the app's " +
                    "\(appVersion); it may fail to load: update the app or export with ExecuTorch \(appVersion)" : nil
            }
        }
        return nil
    }

    private static func numbers(_ v: String) -> [Int] {
        let release = v.split(separator: "+", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        return release.split(separator: ".", omittingEmptySubsequences: false).map { part in
            Int(String(part.prefix { $0.isASCII && $0.isNumber })) ?? 0
        }
    }

    // --- iOS only (no Kotlin twin: the Android AAR has no Core ML) ------------------------------------------------

    /// Encoder methods of the bundle lowered to Core ML (the `coreml-encoders` recipe): the app prefers such a
    /// bundle when several are installed, because the encoders then run on the Neural Engine / GPU.
    public static func coreMLEncoders(_ manifest: BundleManifest) -> [String] {
        manifest.methods.filter { ($0.name == "vision_encoder" || $0.name == "audio_encoder") && $0.backend == "coreml" }
            .map { $0.name }.sorted()
    }
}
