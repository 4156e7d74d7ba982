package dev.megrezmobile.core

/**
 * User-text neutralisation (megrez_mobile/processing/plan.py `neutralize`): the runtime's tokenizer turns every
 * added-token string inside a text into its special id, so a WORD JOINER (U+2060: invisible, no line break,
 * untouched by NFC/NFKC) goes right after the first character of each occurrence. Identity for ordinary text.
 */
object Neutralize {
    const val WORD_JOINER = '\u2060'

    fun apply(text: String, addedTokens: Collection<String>): String {
        val tokens = addedTokens.filter { it.length >= 2 }.distinct()
        if (tokens.none { text.contains(it) }) return text
        val out = StringBuilder(text.length + 8)
        var i = 0
        while (i < text.length) {
            // Whole code points, as Python indexes str: an astral first character is never split.
            val n = Character.charCount(text.codePointAt(i))
            out.append(text, i, i + n)
            if (tokens.any { text.startsWith(it, i) }) out.append(WORD_JOINER)
            i += n
        }
        return out.toString()
    }

    /** "added_tokens" contents of a tokenizer.json (what the C++ tokenizer matches inside text). */
    fun addedTokens(tokenizerJson: String): List<String> {
        val root = JsonObject.parse(tokenizerJson, "tokenizer.json")
        return root.objects("added_tokens").mapNotNull { it.stringOrNull("content") }.filter { it.isNotEmpty() }
    }
}
