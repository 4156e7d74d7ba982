package dev.megrezmobile.core

/**
 * A small JSON reader and the canonical writer shared with the Python SDK (`plan.canonical_json`:
 * sorted keys, one-space indent, ASCII only). The core has no dependencies, so it carries its own.
 *
 * Values: null, Boolean, Long (integers), Double (other numbers), String, List<Any?>, Map<String, Any?>.
 */
object Json {
    class ParseError(message: String) : IllegalArgumentException(message)

    fun parse(text: String): Any? {
        val p = Parser(text)
        p.skipSpace()
        val value = p.value()
        p.skipSpace()
        if (p.pos != text.length) throw p.error("unexpected text after the JSON value")
        return value
    }

    /** Byte-for-byte what Python's `json.dumps(v, indent=1, sort_keys=True, ensure_ascii=True)` prints. */
    fun canonical(value: Any?): String = StringBuilder().also { write(it, value, 0) }.append('\n').toString()

    private fun write(out: StringBuilder, value: Any?, depth: Int) {
        when (value) {
            null -> out.append("null")
            is Boolean -> out.append(if (value) "true" else "false")
            is Int, is Long, is Short, is Byte -> out.append(value.toString())
            is Double, is Float -> writeDouble(out, value.toDouble())
            is String -> quote(out, value)
            is Map<*, *> -> {
                if (value.isEmpty()) { out.append("{}"); return }
                out.append("{\n")
                val keys = value.keys.map { it as String }.sorted()
                keys.forEachIndexed { i, k ->
                    indent(out, depth + 1); quote(out, k); out.append(": ")
                    write(out, value[k], depth + 1)
                    out.append(if (i < keys.size - 1) ",\n" else "\n")
                }
                indent(out, depth); out.append('}')
            }
            is List<*> -> {
                if (value.isEmpty()) { out.append("[]"); return }
                out.append("[\n")
                value.forEachIndexed { i, v ->
                    indent(out, depth + 1); write(out, v, depth + 1)
                    out.append(if (i < value.size - 1) ",\n" else "\n")
                }
                indent(out, depth); out.append(']')
            }
            else -> throw IllegalArgumentException("cannot write ${value::class.simpleName} as JSON")
        }
    }

    private fun writeDouble(out: StringBuilder, d: Double) {
        // Python writes NaN/inf as such (not JSON); the result files carry finite numbers only.
        require(d.isFinite()) { "JSON numbers must be finite, got $d" }
        out.append(if (d == Math.floor(d) && Math.abs(d) < 1e16) String.format("%.1f", d) else d.toString())
    }

    private fun indent(out: StringBuilder, depth: Int) { repeat(depth) { out.append(' ') } }

    fun quote(out: StringBuilder, s: String) {
        out.append('"')
        for (c in s) {
            when {
                c == '"' -> out.append("\\\"")
                c == '\\' -> out.append("\\\\")
                c == '\n' -> out.append("\\n")
                c == '\r' -> out.append("\\r")
                c == '\t' -> out.append("\\t")
                c == '\b' -> out.append("\\b")
                c == '\u000c' -> out.append("\\f")
                c.code < 0x20 || c.code > 0x7e -> out.append("\\u").append(String.format("%04x", c.code))
                else -> out.append(c)
            }
        }
        out.append('"')
    }

    /** Compact one-line JSON (result files, logs). */
    fun compact(value: Any?): String = StringBuilder().also { writeCompact(it, value) }.toString()

    private fun writeCompact(out: StringBuilder, value: Any?) {
        when (value) {
            is Map<*, *> -> {
                out.append('{')
                value.entries.forEachIndexed { i, (k, v) ->
                    if (i > 0) out.append(", ")
                    quote(out, k as String); out.append(": "); writeCompact(out, v)
                }
                out.append('}')
            }
            is List<*> -> {
                out.append('[')
                value.forEachIndexed { i, v -> if (i > 0) out.append(", "); writeCompact(out, v) }
                out.append(']')
            }
            else -> write(out, value, 0)
        }
    }

    private class Parser(val s: String) {
        var pos = 0

        fun error(what: String) = ParseError("$what at character $pos")

        fun skipSpace() { while (pos < s.length && s[pos] in " \t\r\n") pos++ }

        fun value(): Any? {
            if (pos >= s.length) throw error("unexpected end of JSON")
            return when (val c = s[pos]) {
                '{' -> obj()
                '[' -> arr()
                '"' -> str()
                't' -> literal("true", true)
                'f' -> literal("false", false)
                'n' -> literal("null", null)
                else -> if (c == '-' || c.isDigit()) num() else throw error("unexpected '$c'")
            }
        }

        private fun literal(word: String, v: Any?): Any? {
            if (!s.startsWith(word, pos)) throw error("expected $word")
            pos += word.length
            return v
        }

        private fun obj(): Map<String, Any?> {
            val out = LinkedHashMap<String, Any?>()
            pos++; skipSpace()
            if (peek() == '}') { pos++; return out }
            while (true) {
                skipSpace()
                if (peek() != '"') throw error("expected a key")
                val k = str(); skipSpace()
                if (peek() != ':') throw error("expected ':'")
                pos++; skipSpace()
                out[k] = value(); skipSpace()
                when (peek()) { ',' -> pos++; '}' -> { pos++; return out }; else -> throw error("expected ',' or '}'") }
            }
        }

        private fun arr(): List<Any?> {
            val out = ArrayList<Any?>()
            pos++; skipSpace()
            if (peek() == ']') { pos++; return out }
            while (true) {
                skipSpace(); out.add(value()); skipSpace()
                when (peek()) { ',' -> pos++; ']' -> { pos++; return out }; else -> throw error("expected ',' or ']'") }
            }
        }

        private fun peek(): Char = if (pos < s.length) s[pos] else throw error("unexpected end of JSON")

        private fun str(): String {
            val out = StringBuilder()
            pos++
            while (true) {
                val c = peek(); pos++
                when (c) {
                    '"' -> return out.toString()
                    '\\' -> {
                        val e = peek(); pos++
                        when (e) {
                            '"' -> out.append('"'); '\\' -> out.append('\\'); '/' -> out.append('/')
                            'b' -> out.append('\b'); 'f' -> out.append('\u000c'); 'n' -> out.append('\n')
                            'r' -> out.append('\r'); 't' -> out.append('\t')
                            'u' -> {
                                if (pos + 4 > s.length) throw error("short \\u escape")
                                out.append(s.substring(pos, pos + 4).toInt(16).toChar()); pos += 4
                            }
                            else -> throw error("bad escape \\$e")
                        }
                    }
                    else -> out.append(c)
                }
            }
        }

        private fun num(): Any {
            val start = pos
            if (s[pos] == '-') pos++
            while (pos < s.length && (s[pos].isDigit() || s[pos] in ".eE+-")) pos++
            val t = s.substring(start, pos)
            return if (t.any { it in ".eE" }) t.toDouble() else t.toLongOrNull() ?: t.toDouble()
        }
    }
}

/** Typed access to parsed JSON objects; errors name the path of the field. */
class JsonObject(val raw: Map<String, Any?>, val path: String) {
    fun has(key: String) = raw[key] != null
    private fun where(key: String) = if (path.isEmpty()) key else "$path.$key"
    private fun missing(key: String): Nothing = throw FieldError(where(key), "is missing")

    fun string(key: String): String = raw[key] as? String ?: if (raw[key] == null) missing(key) else
        throw FieldError(where(key), "must be a string")
    fun stringOrNull(key: String): String? = raw[key]?.let { it as? String ?: throw FieldError(where(key), "must be a string") }
    fun long(key: String): Long = when (val v = raw[key]) {
        is Long -> v
        null -> missing(key)
        else -> throw FieldError(where(key), "must be an integer")
    }
    fun int(key: String): Int = long(key).also {
        if (it < Int.MIN_VALUE || it > Int.MAX_VALUE) throw FieldError(where(key), "is out of range")
    }.toInt()
    fun intOr(key: String, default: Int): Int = if (raw[key] == null) default else int(key)
    fun double(key: String): Double = when (val v = raw[key]) {
        is Long -> v.toDouble(); is Double -> v
        null -> missing(key)
        else -> throw FieldError(where(key), "must be a number")
    }
    fun doubleOr(key: String, default: Double): Double = if (raw[key] == null) default else double(key)
    fun bool(key: String): Boolean = raw[key] as? Boolean ?: if (raw[key] == null) missing(key) else
        throw FieldError(where(key), "must be true or false")
    fun boolOr(key: String, default: Boolean): Boolean = if (raw[key] == null) default else bool(key)
    @Suppress("UNCHECKED_CAST")
    fun obj(key: String): JsonObject = JsonObject(raw[key] as? Map<String, Any?> ?: if (raw[key] == null) missing(key) else
        throw FieldError(where(key), "must be an object"), where(key))
    fun list(key: String): List<Any?> = raw[key] as? List<Any?> ?: if (raw[key] == null) missing(key) else
        throw FieldError(where(key), "must be a list")
    @Suppress("UNCHECKED_CAST")
    fun objects(key: String): List<JsonObject> = list(key).mapIndexed { i, v ->
        JsonObject(v as? Map<String, Any?> ?: throw FieldError("${where(key)}[$i]", "must be an object"), "${where(key)}[$i]")
    }

    companion object {
        @Suppress("UNCHECKED_CAST")
        fun parse(text: String, what: String): JsonObject {
            val v = try { Json.parse(text) } catch (e: Json.ParseError) { throw FieldError(what, "is not valid JSON (${e.message})") }
            return JsonObject(v as? Map<String, Any?> ?: throw FieldError(what, "must be a JSON object"), "")
        }
    }
}

/** A field of a JSON document is missing or wrong; the message names it. */
class FieldError(val field: String, val problem: String) : IllegalArgumentException("$field $problem")
