import Foundation

/// A JSON object whose keys keep their insertion order (Kotlin's LinkedHashMap / linkedMapOf): what the parser
/// gives for objects and what every `toJson()` returns. `nil` values are kept (written as null).
public struct JsonMap {
    public private(set) var keys: [String] = []
    private var storage: [String: Any?] = [:]

    public init() {}

    public init(_ pairs: [(String, Any?)]) {
        for (k, v) in pairs { self[k] = v }
    }

    /// The value, or nil when the key is absent or null (as Kotlin's `map[key]`).
    public subscript(key: String) -> Any? {
        get { storage[key] ?? nil }
        set {
            if storage[key] == nil { keys.append(key) }
            storage[key] = .some(newValue)
        }
    }

    public func containsKey(_ key: String) -> Bool { storage[key] != nil }
    public var count: Int { keys.count }
    public var isEmpty: Bool { keys.isEmpty }
}

/// A small JSON reader and the canonical writer shared with the Python SDK (`plan.canonical_json`:
/// sorted keys, one-space indent, ASCII only). The core has no dependencies, so it carries its own.
///
/// Values: nil, Bool, Int64 (integers), Double (other numbers), String, [Any?], JsonMap.
public enum Json {
    public struct ParseError: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    public static func parse(_ text: String) throws -> Any? {
        let p = Parser(text)
        p.skipSpace()
        let value = try p.value()
        p.skipSpace()
        if p.pos != p.s.count { throw p.error("unexpected text after the JSON value") }
        return value
    }

    /// Byte-for-byte what Python's `json.dumps(v, indent=1, sort_keys=True, ensure_ascii=True)` prints.
    public static func canonical(_ value: Any?) throws -> String {
        var out = ""
        try write(&out, value, 0)
        out.append("\n")
        return out
    }

    private static func write(_ out: inout String, _ value: Any?, _ depth: Int) throws {
        guard let value = value else { out.append("null"); return }
        if let b = value as? Bool { out.append(b ? "true" : "false"); return }
        if let n = integer(value) { out.append(String(n)); return }
        if let d = value as? Double { try writeDouble(&out, d); return }
        if let f = value as? Float { try writeDouble(&out, Double(f)); return }
        if let s = value as? String { quote(&out, s); return }
        if let m = objectPairs(value) {
            if m.isEmpty { out.append("{}"); return }
            out.append("{\n")
            let sorted = m.sorted { $0.0 < $1.0 }
            for (i, (k, v)) in sorted.enumerated() {
                indent(&out, depth + 1); quote(&out, k); out.append(": ")
                try write(&out, v, depth + 1)
                out.append(i < sorted.count - 1 ? ",\n" : "\n")
            }
            indent(&out, depth); out.append("}")
            return
        }
        if let list = value as? [Any?] {
            if list.isEmpty { out.append("[]"); return }
            out.append("[\n")
            for (i, v) in list.enumerated() {
                indent(&out, depth + 1); try write(&out, v, depth + 1)
                out.append(i < list.count - 1 ? ",\n" : "\n")
            }
            indent(&out, depth); out.append("]")
            return
        }
        throw ParseError(message: "cannot write \(type(of: value)) as JSON")
    }

    /// Integers of any width as Int64 (Kotlin: Int, Long, Short, Byte).
    static func integer(_ value: Any) -> Int64? {
        switch value {
        case let v as Int: return Int64(v)
        case let v as Int64: return v
        case let v as Int32: return Int64(v)
        case let v as Int16: return Int64(v)
        case let v as Int8: return Int64(v)
        case let v as UInt8: return Int64(v)
        default: return nil
        }
    }

    /// A JsonMap or a Swift dictionary as (key, value) pairs in insertion order (dictionaries: any order).
    static func objectPairs(_ value: Any) -> [(String, Any?)]? {
        if let m = value as? JsonMap { return m.keys.map { ($0, m[$0]) } }
        if let d = value as? [String: Any?] { return d.map { ($0.key, $0.value) } }
        return nil
    }

    private static func writeDouble(_ out: inout String, _ d: Double) throws {
        // Python writes NaN/inf as such (not JSON); the result files carry finite numbers only.
        guard d.isFinite else { throw ParseError(message: "JSON numbers must be finite, got \(d)") }
        // Swift's shortest round-trip description is Python's repr for non-integral values ("0.1", "1e-05").
        out.append(d == d.rounded(.down) && abs(d) < 1e16 ? String(format: "%.1f", d) : "\(d)")
    }

    private static func indent(_ out: inout String, _ depth: Int) {
        out.append(String(repeating: " ", count: depth))
    }

    private static let hexDigits = Array("0123456789abcdef")

    /// UTF-16 code units, as Kotlin's Char and Python's ensure_ascii (astral characters as two \u escapes).
    public static func quote(_ out: inout String, _ s: String) {
        out.append("\"")
        for c in s.utf16 {
            switch c {
            case 0x22: out.append("\\\"")
            case 0x5C: out.append("\\\\")
            case 0x0A: out.append("\\n")
            case 0x0D: out.append("\\r")
            case 0x09: out.append("\\t")
            case 0x08: out.append("\\b")
            case 0x0C: out.append("\\f")
            default:
                if c < 0x20 || c > 0x7E {
                    out.append("\\u")
                    for shift in stride(from: 12, through: 0, by: -4) { out.append(hexDigits[Int((c >> UInt16(shift)) & 0xF)]) }
                } else {
                    out.append(Character(Unicode.Scalar(UInt8(c))))
                }
            }
        }
        out.append("\"")
    }

    /// Compact one-line JSON (result files, logs).
    public static func compact(_ value: Any?) throws -> String {
        var out = ""
        try writeCompact(&out, value)
        return out
    }

    private static func writeCompact(_ out: inout String, _ value: Any?) throws {
        if let v = value, let m = objectPairs(v) {
            out.append("{")
            for (i, (k, x)) in m.enumerated() {
                if i > 0 { out.append(", ") }
                quote(&out, k); out.append(": "); try writeCompact(&out, x)
            }
            out.append("}")
        } else if let v = value, !(v is String), let list = v as? [Any?] {
            out.append("[")
            for (i, x) in list.enumerated() {
                if i > 0 { out.append(", ") }
                try writeCompact(&out, x)
            }
            out.append("]")
        } else {
            try write(&out, value, 0)
        }
    }

    /// Works on UTF-16 code units, as the Kotlin parser works on Chars: \u escapes of a surrogate pair join up.
    private final class Parser {
        let s: [UInt16]
        var pos = 0

        init(_ text: String) { s = Array(text.utf16) }

        func error(_ what: String) -> ParseError { ParseError(message: "\(what) at character \(pos)") }

        func skipSpace() {
            while pos < s.count && (s[pos] == 0x20 || s[pos] == 0x09 || s[pos] == 0x0D || s[pos] == 0x0A) { pos += 1 }
        }

        static func isDigit(_ c: UInt16) -> Bool { c >= 0x30 && c <= 0x39 }

        func value() throws -> Any? {
            if pos >= s.count { throw error("unexpected end of JSON") }
            let c = s[pos]
            switch c {
            case 0x7B: return try obj()                              // {
            case 0x5B: return try arr()                              // [
            case 0x22: return try str()                              // "
            case 0x74: return try literal("true", true)
            case 0x66: return try literal("false", false)
            case 0x6E: return try literal("null", nil)
            default:
                if c == 0x2D || Parser.isDigit(c) { return try num() }
                throw error("unexpected '\(String(decoding: [c], as: UTF16.self))'")
            }
        }

        private func literal(_ word: String, _ v: Any?) throws -> Any? {
            let w = Array(word.utf16)
            if pos + w.count > s.count || Array(s[pos..<pos + w.count]) != w { throw error("expected \(word)") }
            pos += w.count
            return v
        }

        private func obj() throws -> JsonMap {
            var out = JsonMap()
            pos += 1; skipSpace()
            if try peek() == 0x7D { pos += 1; return out }
            while true {
                skipSpace()
                if try peek() != 0x22 { throw error("expected a key") }
                let k = try str(); skipSpace()
                if try peek() != 0x3A { throw error("expected ':'") }
                pos += 1; skipSpace()
                out[k] = try value(); skipSpace()
                switch try peek() {
                case 0x2C: pos += 1
                case 0x7D: pos += 1; return out
                default: throw error("expected ',' or '}'")
                }
            }
        }

        private func arr() throws -> [Any?] {
            var out: [Any?] = []
            pos += 1; skipSpace()
            if try peek() == 0x5D { pos += 1; return out }
            while true {
                skipSpace(); out.append(try value()); skipSpace()
                switch try peek() {
                case 0x2C: pos += 1
                case 0x5D: pos += 1; return out
                default: throw error("expected ',' or ']'")
                }
            }
        }

        private func peek() throws -> UInt16 {
            if pos < s.count { return s[pos] }
            throw error("unexpected end of JSON")
        }

        private func str() throws -> String {
            var out: [UInt16] = []
            pos += 1
            while true {
                let c = try peek(); pos += 1
                switch c {
                case 0x22: return String(decoding: out, as: UTF16.self)
                case 0x5C:
                    let e = try peek(); pos += 1
                    switch e {
                    case 0x22, 0x5C, 0x2F: out.append(e)
                    case 0x62: out.append(0x08)
                    case 0x66: out.append(0x0C)
                    case 0x6E: out.append(0x0A)
                    case 0x72: out.append(0x0D)
                    case 0x74: out.append(0x09)
                    case 0x75:
                        if pos + 4 > s.count { throw error("short \\u escape") }
                        let hex = String(decoding: s[pos..<pos + 4], as: UTF16.self)
                        guard let unit = UInt16(hex, radix: 16) else { throw error("bad \\u escape") }
                        out.append(unit); pos += 4
                    default: throw error("bad escape \\\(String(decoding: [e], as: UTF16.self))")
                    }
                default: out.append(c)
                }
            }
        }

        private func num() throws -> Any {
            let start = pos
            if s[pos] == 0x2D { pos += 1 }
            while pos < s.count && (Parser.isDigit(s[pos]) || s[pos] == 0x2E || s[pos] == 0x65 || s[pos] == 0x45 ||
                                    s[pos] == 0x2B || s[pos] == 0x2D) { pos += 1 }
            let t = String(decoding: s[start..<pos], as: UTF16.self)
            if !t.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }), let n = Int64(t) { return n }
            guard let d = Double(t) else { throw error("bad number \(t)") }
            return d
        }
    }
}

/// Typed access to parsed JSON objects; errors name the path of the field.
public final class JsonObject {
    public let raw: JsonMap
    public let path: String

    public init(_ raw: JsonMap, _ path: String) {
        self.raw = raw
        self.path = path
    }

    public func has(_ key: String) -> Bool { raw[key] != nil }
    private func whereIs(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
    private func missing(_ key: String) -> FieldError { FieldError(whereIs(key), "is missing") }

    public func string(_ key: String) throws -> String {
        guard let v = raw[key] else { throw missing(key) }
        guard let s = v as? String else { throw FieldError(whereIs(key), "must be a string") }
        return s
    }

    public func stringOrNull(_ key: String) throws -> String? {
        guard let v = raw[key] else { return nil }
        guard let s = v as? String else { throw FieldError(whereIs(key), "must be a string") }
        return s
    }

    public func long(_ key: String) throws -> Int64 {
        guard let v = raw[key] else { throw missing(key) }
        guard !(v is Bool), let n = v as? Int64 else { throw FieldError(whereIs(key), "must be an integer") }
        return n
    }

    public func int(_ key: String) throws -> Int {
        let v = try long(key)
        if v < Int64(Int32.min) || v > Int64(Int32.max) { throw FieldError(whereIs(key), "is out of range") }
        return Int(v)
    }

    public func intOr(_ key: String, _ defaultValue: Int) throws -> Int { try raw[key] == nil ? defaultValue : int(key) }

    public func double(_ key: String) throws -> Double {
        guard let v = raw[key] else { throw missing(key) }
        if let n = v as? Int64 { return Double(n) }
        if let d = v as? Double { return d }
        throw FieldError(whereIs(key), "must be a number")
    }

    public func doubleOr(_ key: String, _ defaultValue: Double) throws -> Double {
        try raw[key] == nil ? defaultValue : double(key)
    }

    public func bool(_ key: String) throws -> Bool {
        guard let v = raw[key] else { throw missing(key) }
        guard let b = v as? Bool else { throw FieldError(whereIs(key), "must be true or false") }
        return b
    }

    public func boolOr(_ key: String, _ defaultValue: Bool) throws -> Bool { try raw[key] == nil ? defaultValue : bool(key) }

    public func obj(_ key: String) throws -> JsonObject {
        guard let v = raw[key] else { throw missing(key) }
        guard let m = v as? JsonMap else { throw FieldError(whereIs(key), "must be an object") }
        return JsonObject(m, whereIs(key))
    }

    public func list(_ key: String) throws -> [Any?] {
        guard let v = raw[key] else { throw missing(key) }
        guard let l = v as? [Any?] else { throw FieldError(whereIs(key), "must be a list") }
        return l
    }

    public func objects(_ key: String) throws -> [JsonObject] {
        try list(key).enumerated().map { (i, v) -> JsonObject in
            guard let m = v as? JsonMap else { throw FieldError("\(whereIs(key))[\(i)]", "must be an object") }
            return JsonObject(m, "\(whereIs(key))[\(i)]")
        }
    }

    public static func parse(_ text: String, _ what: String) throws -> JsonObject {
        let v: Any?
        do { v = try Json.parse(text) } catch let e as Json.ParseError {
            throw FieldError(what, "is not valid JSON (\(e.message))")
        }
        guard let m = v as? JsonMap else { throw FieldError(what, "must be a JSON object") }
        return JsonObject(m, "")
    }
}

/// A field of a JSON document is missing or wrong; the message names it.
public struct FieldError: Error, LocalizedError, CustomStringConvertible {
    public let field: String
    public let problem: String

    public init(_ field: String, _ problem: String) {
        self.field = field
        self.problem = problem
    }

    public var message: String { "\(field) \(problem)" }
    public var description: String { message }
    public var errorDescription: String? { message }
}
