import Foundation

/// The benchmark entry point's names, as megrez_mobile/harness/app_contract.py defines them once (Kotlin twin:
/// BenchmarkContract.kt, which `megrez-mobile profile --device adb` drives on Android). The iOS app has no
/// benchmark screen driven by the harness yet; these are kept so that the result JSON the app could write and the
/// options it could parse are the agent's, and tests/test_ios_sources.py checks they equal the SDK's.
public enum BenchmarkContract {
    public static let APP_PACKAGE = "dev.megrezmobile.demo"
    public static let BENCHMARK_ACTIVITY = ".BenchmarkActivity"
    public static let EXTRA_BUNDLE_DIR = "bundle_dir"
    public static let EXTRA_RESULT_PATH = "result_path"
    public static let EXTRA_ARGS = "args"
    public static let ADB_BUNDLE_ROOT = "/data/local/tmp/megrez-mobile"
    public static let TMP_SUFFIX = ".tmp"
    public static let ERROR_SUFFIX = ".error"
    public static let RESULT_SCHEMA = "megrez-mobile/profile/1"

    /// The agent's options, in its --help order: name, kind ("int", "float", "int_list", "flag").
    public static let OPTIONS: [(String, String)] = [
        ("--reps", "int"), ("--warmup", "int"), ("--threads", "int"), ("--prefill", "int_list"),
        ("--decode", "int"), ("--decode-contexts", "int_list"), ("--audio-seconds", "float"), ("--top-ops", "int"), ("--no-per-op", "flag"),
        ("--quick", "flag"),
    ]

    /// Top-level keys of a result, as the Python agent writes them (the harness adds "device").
    public static let RESULT_KEYS = ["schema", "bundle", "host", "options", "prompts", "verify_s", "rss_before_load_mb",
                                     "slice_shapes", "metrics", "operators"]

    public static func prefillMetric(_ tokens: Int) -> String { "prefill_tok_s@\(tokens)" }
    public static func decodeMetric(_ tokens: Int) -> String { "decode_tok_s@\(tokens)" }
    public static func ttftMetric(_ prompt: String) -> String { "ttft_s.\(prompt)" }
    public static let LOAD_METRIC = "load_s"
    public static let VISION_METRIC = "vision_ms_per_slice"
    public static let AUDIO_METRIC = "audio_ms_per_audio_s"
    public static let PEAK_MEMORY_METRIC = "peak_rss_mb"
    public static let TTFT_PROMPTS = ["text", "image", "audio"]
}

/// A benchmark argument the agent would refuse, in words.
public struct BenchmarkArgumentError: Error, LocalizedError, CustomStringConvertible {
    public let message: String

    public init(_ message: String) { self.message = message }

    public var description: String { message }
    public var errorDescription: String? { message }
}

/// megrez_mobile/harness/profile.py `ProfileOptions`, parsed from the `args` list exactly as the agent parses argv.
public struct BenchmarkOptions: Equatable {
    public var reps: Int
    public var warmup: Int
    public var threads: Int?
    public var prefillLengths: [Int]
    public var decodeTokens: Int
    public var decodeContexts: [Int]
    public var audioSeconds: Double
    public var perOp: Bool
    public var topOps: Int

    public init(reps: Int = 5, warmup: Int = 1, threads: Int? = nil, prefillLengths: [Int] = [128, 512],
                decodeTokens: Int = 128, decodeContexts: [Int] = [128, 2048], audioSeconds: Double = 30.0,
                perOp: Bool = true, topOps: Int = 15) {
        self.reps = reps
        self.warmup = warmup
        self.threads = threads
        self.prefillLengths = prefillLengths
        self.decodeTokens = decodeTokens
        self.decodeContexts = decodeContexts
        self.audioSeconds = audioSeconds
        self.perOp = perOp
        self.topOps = topOps
    }

    public func toJson() -> JsonMap {
        JsonMap([("reps", reps), ("warmup", warmup), ("threads", threads), ("prefill_lengths", prefillLengths),
                 ("decode_tokens", decodeTokens), ("decode_contexts", decodeContexts), ("audio_seconds", audioSeconds), ("per_op", perOp),
                 ("top_ops", topOps)])
    }

    /// `--quick`: ProfileOptions.quick's sizes; explicit --reps/--warmup win over it (as in the agent).
    private static func quick(_ base: BenchmarkOptions) -> BenchmarkOptions {
        var o = base
        o.prefillLengths = [16, 64]
        o.decodeTokens = 16
        o.decodeContexts = []
        o.audioSeconds = 5.0
        return o
    }

    public static func parse(_ args: [String]) throws -> BenchmarkOptions {
        var known: [String: String] = [:]
        for (name, kind) in BenchmarkContract.OPTIONS { known[name] = kind }
        var values: [String: String] = [:]
        var i = 0
        while i < args.count {
            let a = args[i]
            var name = a
            var inline: String? = nil
            if a.hasPrefix("--"), let eq = a.firstIndex(of: "=") {
                name = String(a[..<eq])
                inline = String(a[a.index(after: eq)...])
            }
            guard let kind = known[name] else {
                throw BenchmarkArgumentError("unknown benchmark argument \"\(a)\"; known: " +
                                             BenchmarkContract.OPTIONS.map { $0.0 }.joined(separator: ", "))
            }
            if kind == "flag" { values[name] = "true"; i += 1; continue }
            guard let v = inline ?? (i + 1 < args.count ? args[i + 1] : nil) else {
                throw BenchmarkArgumentError("\(name) needs a value")
            }
            values[name] = v
            i += inline != nil ? 1 : 2
        }
        func int(_ n: String) throws -> Int? {
            guard let v = values[n] else { return nil }
            guard let x = Int(v) else { throw BenchmarkArgumentError("\(n): \"\(v)\" is not an integer") }
            return x
        }
        let quickMode = values["--quick"] != nil
        let perOp = values["--no-per-op"] == nil
        let d = BenchmarkOptions()
        var o: BenchmarkOptions
        if quickMode {
            var base = d
            base.reps = 2
            base.warmup = 1
            o = quick(base)
        } else {
            o = d
            if let p = values["--prefill"] {
                o.prefillLengths = try p.split(separator: ",").filter { !$0.isEmpty }.map { part -> Int in
                    guard let x = Int(part) else { throw BenchmarkArgumentError("--prefill: \"\(part)\" is not an integer") }
                    return x
                }
            }
            o.decodeTokens = try int("--decode") ?? d.decodeTokens
            if let s = values["--audio-seconds"] {
                guard let x = Double(s) else { throw BenchmarkArgumentError("--audio-seconds: \"\(s)\" is not a number") }
                o.audioSeconds = x
            }
            o.topOps = try int("--top-ops") ?? d.topOps
        }
        o.threads = try int("--threads")
        o.perOp = perOp
        if let c = values["--decode-contexts"] {
            o.decodeContexts = try c.split(separator: ",").filter { !$0.isEmpty }.map { part -> Int in
                guard let x = Int(part) else { throw BenchmarkArgumentError("--decode-contexts: \"\(part)\" is not an integer") }
                return x
            }
        }
        if let r = try int("--reps") { o.reps = r }
        if let w = try int("--warmup") { o.warmup = w }
        return o
    }

    /// The `args` extra: a JSON array of strings.
    public static func parseExtra(_ json: String) throws -> BenchmarkOptions {
        guard let list = try Json.parse(json) as? [Any?] else {
            throw BenchmarkArgumentError("args must be a JSON array of strings")
        }
        return try parse(list.map { v -> String in
            guard let s = v as? String else { throw BenchmarkArgumentError("args must be a JSON array of strings") }
            return s
        })
    }
}

/// Repeated measurements of one quantity, written as profile.py's `Stat.to_dict`.
public struct Stat: Equatable {
    public let unit: String
    public let better: String
    public let samples: [Double]

    public init(_ unit: String, _ better: String, _ samples: [Double]) throws {
        guard !samples.isEmpty else { throw BenchmarkArgumentError("a statistic needs at least one sample") }
        self.unit = unit
        self.better = better
        self.samples = samples
    }

    public var median: Double {
        let s = samples.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    public func toJson() -> JsonMap {
        let lo = samples.min() ?? 0
        let hi = samples.max() ?? 0
        return JsonMap([("median", median), ("min", lo), ("max", hi), ("spread", hi - lo), ("n", samples.count),
                        ("unit", unit), ("better", better), ("samples", samples)])
    }
}

/// Repeats `fn` after warm-up runs, as profile.py's `repeat`.
public func repeatMeasured(_ options: BenchmarkOptions, _ fn: () throws -> Double) rethrows -> [Double] {
    for _ in 0..<max(0, options.warmup) { _ = try fn() }
    var out: [Double] = []
    for _ in 0..<max(1, options.reps) { out.append(try fn()) }
    return out
}
