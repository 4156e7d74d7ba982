package dev.megrezmobile.core

/**
 * Bytes in, only complete characters out. A byte-level BPE token may end inside a multi-byte UTF-8 character
 * (every Chinese character is 3 bytes); the tail waits for the next piece. Invalid bytes become U+FFFD, as
 * Python's decode(errors="replace") gives; `flush` ends the answer.
 */
class Utf8PieceBuffer {
    private var pending = ByteArray(0)

    fun push(bytes: ByteArray): String {
        val all = pending + bytes
        val cut = completeLength(all)
        pending = all.copyOfRange(cut, all.size)
        return String(all, 0, cut, Charsets.UTF_8)
    }

    fun flush(): String = String(pending, Charsets.UTF_8).also { pending = ByteArray(0) }

    /** Length of the longest prefix that does not end inside a (possibly still valid) multi-byte sequence. */
    private fun completeLength(b: ByteArray): Int {
        // Look back at most 3 bytes for the lead byte of an unfinished sequence.
        var i = b.size - 1
        var back = 0
        while (i >= 0 && back < 3 && (b[i].toInt() and 0xC0) == 0x80) { i--; back++ }
        if (i < 0) return b.size
        val lead = b[i].toInt() and 0xff
        val need = when {
            lead >= 0xF0 && lead <= 0xF4 -> 4
            lead >= 0xE0 -> if (lead <= 0xEF) 3 else 1
            lead >= 0xC2 -> 2
            else -> 1
        }
        return if (b.size - i < need) i else b.size
    }
}
