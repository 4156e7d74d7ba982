import Foundation

/// Bytes in, only complete characters out. A byte-level BPE token may end inside a multi-byte UTF-8 character
/// (every Chinese character is 3 bytes); the tail waits for the next piece. Invalid bytes become U+FFFD, as
/// Python's decode(errors="replace") gives; `flush` ends the answer.
///
/// The app's Objective-C++ runner wrapper hands every piece to Swift as raw bytes (never as an NSString, which is
/// where ExecuTorchLLM loses them) and this buffer is the only place they become text.
public final class Utf8PieceBuffer {
    private var pending: [UInt8] = []

    public init() {}

    public func push(_ bytes: [UInt8]) -> String {
        let all = pending + bytes
        let cut = completeLength(all)
        pending = Array(all[cut...])
        return String(decoding: all[0..<cut], as: UTF8.self)
    }

    public func flush() -> String {
        let out = String(decoding: pending, as: UTF8.self)
        pending = []
        return out
    }

    /// Length of the longest prefix that does not end inside a (possibly still valid) multi-byte sequence.
    private func completeLength(_ b: [UInt8]) -> Int {
        // Look back at most 3 bytes for the lead byte of an unfinished sequence.
        var i = b.count - 1
        var back = 0
        while i >= 0 && back < 3 && (b[i] & 0xC0) == 0x80 { i -= 1; back += 1 }
        if i < 0 { return b.count }
        let lead = Int(b[i])
        let need: Int
        if lead >= 0xF0 && lead <= 0xF4 { need = 4 }
        else if lead >= 0xE0 { need = lead <= 0xEF ? 3 : 1 }
        else if lead >= 0xC2 { need = 2 }
        else { need = 1 }
        return b.count - i < need ? i : b.count
    }
}
