import Foundation

/// EXIF orientation: read the tag from a JPEG's APP1 segment and apply it to decoded pixels, as Pillow's
/// `ImageOps.exif_transpose` does in megrez_mobile/processing/image.py `load_image`. Camera photos are stored
/// sideways with orientation 6 or 8; ignoring it (as ExecuTorch's sample app does) feeds the model a rotated picture.
public enum ExifOrientation {
    /// Reading past the end of the bytes: the file is truncated or malformed (Kotlin: IndexOutOfBoundsException).
    private struct OutOfBounds: Error {}

    /// The orientation (1..8) of a JPEG file's first EXIF block; 1 when there is none or it is unreadable.
    public static func readJpeg(_ bytes: [UInt8]) -> Int {
        (try? parseJpeg(bytes)) ?? 1
    }

    public static func readJpeg(data: Data) -> Int { readJpeg([UInt8](data)) }

    private static func byte(_ b: [UInt8], _ i: Int) throws -> Int {
        guard i >= 0 && i < b.count else { throw OutOfBounds() }
        return Int(b[i])
    }

    private static func u16be(_ b: [UInt8], _ i: Int) throws -> Int {
        let hi = try byte(b, i)
        let lo = try byte(b, i + 1)
        return (hi << 8) | lo
    }

    private static func parseJpeg(_ b: [UInt8]) throws -> Int {
        if try b.count < 4 || u16be(b, 0) != 0xFFD8 { return 1 }
        var i = 2
        while i + 4 <= b.count {
            if try byte(b, i) != 0xFF { return 1 }
            let marker = try byte(b, i + 1)
            if marker == 0xFF { i += 1; continue }  // fill byte
            if marker == 0xDA || marker == 0xD9 { return 1 }  // image data starts: no EXIF before it
            let length = try u16be(b, i + 2)
            if marker == 0xE1 && length >= 8 && i + 10 <= b.count && Array(b[i + 4..<i + 10]) == [0x45, 0x78, 0x69, 0x66, 0, 0] {
                return try tiffOrientation(b, i + 10, i + 2 + length)
            }
            i += 2 + length
        }
        return 1
    }

    private static func tiffOrientation(_ b: [UInt8], _ start: Int, _ end: Int) throws -> Int {
        let o0 = try byte(b, start)
        let o1 = try byte(b, start + 1)
        let little: Bool
        if o0 == 0x49 && o1 == 0x49 { little = true }            // "II"
        else if o0 == 0x4D && o1 == 0x4D { little = false }      // "MM"
        else { return 1 }
        func u16(_ o: Int) throws -> Int {
            let i = start + o
            guard i + 2 <= end else { throw OutOfBounds() }
            let b0 = try byte(b, i)
            let b1 = try byte(b, i + 1)
            return little ? b0 | (b1 << 8) : (b0 << 8) | b1
        }
        func u32(_ o: Int) throws -> Int {
            let first = try u16(o)
            let second = try u16(o + 2)
            return little ? first | (second << 16) : (first << 16) | second
        }
        if try u16(2) != 42 { return 1 }
        let ifd = try u32(4)
        let count = try u16(ifd)
        for n in 0..<count {
            let entry = ifd + 2 + n * 12
            if try u16(entry) == 0x0112 {  // Orientation, SHORT
                let v = try u16(entry + 8)
                return (1...8).contains(v) ? v : 1
            }
        }
        return 1
    }

    /// `image` as it should be displayed for `orientation` (Pillow's transposes: 2 mirror ... 8 rotate 90 CCW).
    public static func apply(_ image: RgbImage, _ orientation: Int) -> RgbImage {
        if !(2...8).contains(orientation) { return image }
        let w = image.width
        let h = image.height
        let swap = orientation >= 5
        let ow = swap ? h : w
        let oh = swap ? w : h
        var out = [UInt8](repeating: 0, count: ow * oh * 3)
        let src = image.pixels
        for y in 0..<oh {
            for x in 0..<ow {
                let (sx, sy) = sourcePixel(orientation, x, y, w, h)
                let from = (sy * w + sx) * 3
                let to = (y * ow + x) * 3
                out[to] = src[from]; out[to + 1] = src[from + 1]; out[to + 2] = src[from + 2]
            }
        }
        return RgbImage(checked: ow, oh, out)
    }

    /// Source pixel for output (x, y) of a w x h image.
    private static func sourcePixel(_ orientation: Int, _ x: Int, _ y: Int, _ w: Int, _ h: Int) -> (Int, Int) {
        switch orientation {
        case 2: return (w - 1 - x, y)              // FLIP_LEFT_RIGHT
        case 3: return (w - 1 - x, h - 1 - y)      // ROTATE_180
        case 4: return (x, h - 1 - y)              // FLIP_TOP_BOTTOM
        case 5: return (y, x)                      // TRANSPOSE
        case 6: return (y, h - 1 - x)              // ROTATE_270 (90 degrees clockwise)
        case 7: return (w - 1 - y, h - 1 - x)      // TRANSVERSE
        default: return (w - 1 - y, x)             // 8: ROTATE_90 (counter-clockwise)
        }
    }
}
