import Foundation

/// User-text neutralisation (megrez_mobile/processing/plan.py `neutralize`): the runtime's tokenizer turns every
/// added-token string inside a text into its special id, so a WORD JOINER (U+2060: invisible, no line break,
/// untouched by NFC/NFKC) goes right after the first character of each occurrence. Identity for ordinary text.
///
/// Works on Unicode scalars, as Python indexes str (Swift's String comparison is canonical-equivalence based, which
/// would match strings the C++ tokenizer does not): an astral first character is never split.
public enum Neutralize {
    public static let WORD_JOINER: Unicode.Scalar = "\u{2060}"

    public static func apply(_ text: String, _ addedTokens: [String]) -> String {
        var seen = Set<[Unicode.Scalar]>()
        let tokens = addedTokens.map { Array($0.unicodeScalars) }.filter { $0.count >= 2 && seen.insert($0).inserted }
        let s = Array(text.unicodeScalars)
        func startsWith(_ t: [Unicode.Scalar], _ i: Int) -> Bool {
            i + t.count <= s.count && s[i..<i + t.count].elementsEqual(t)
        }
        let present = tokens.contains { t in (0..<max(0, s.count - t.count + 1)).contains { startsWith(t, $0) } }
        if !present { return text }
        var out = String.UnicodeScalarView()
        for i in 0..<s.count {
            out.append(s[i])
            if tokens.contains(where: { startsWith($0, i) }) { out.append(WORD_JOINER) }
        }
        return String(out)
    }

    /// "added_tokens" contents of a tokenizer.json (what the C++ tokenizer matches inside text).
    public static func addedTokens(_ tokenizerJson: String) throws -> [String] {
        let root = try JsonObject.parse(tokenizerJson, "tokenizer.json")
        return try root.objects("added_tokens").compactMap { try $0.stringOrNull("content") }.filter { !$0.isEmpty }
    }
}
