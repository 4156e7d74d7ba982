import Foundation

/// A small PNG reader for the tests (8-bit, not interlaced: what Pillow writes for the vectors), with its own
/// inflate, because Foundation on Linux exposes no zlib and MegrezCore must stay free of platform image decoders
/// (the app decodes with ImageIO; the tests must run on Linux too). Test code only.
enum PngDecoder {
    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    /// (width, height, interleaved RGB bytes); alpha is dropped, as Pillow's convert("RGB") does.
    static func decodeRgb(_ bytes: [UInt8]) throws -> (width: Int, height: Int, rgb: [UInt8]) {
        let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        guard bytes.count > 8 && Array(bytes[0..<8]) == signature else { throw Failure("not a PNG file") }
        func u32(_ i: Int) throws -> Int {
            guard i + 4 <= bytes.count else { throw Failure("truncated PNG") }
            return Int(bytes[i]) << 24 | Int(bytes[i + 1]) << 16 | Int(bytes[i + 2]) << 8 | Int(bytes[i + 3])
        }
        var pos = 8
        var width = 0, height = 0, colorType = -1
        var palette: [UInt8] = []
        var idat: [UInt8] = []
        while pos + 8 <= bytes.count {
            let length = try u32(pos)
            let type = String(decoding: bytes[pos + 4..<pos + 8], as: UTF8.self)
            let start = pos + 8
            guard start + length + 4 <= bytes.count else { throw Failure("truncated \(type) chunk") }
            let data = bytes[start..<start + length]
            switch type {
            case "IHDR":
                width = try u32(start)
                height = try u32(start + 4)
                let depth = Int(bytes[start + 8])
                colorType = Int(bytes[start + 9])
                let interlace = Int(bytes[start + 12])
                guard depth == 8 && interlace == 0 else {
                    throw Failure("only 8-bit non-interlaced PNG is supported (depth \(depth), interlace \(interlace))")
                }
            case "PLTE": palette = Array(data)
            case "IDAT": idat.append(contentsOf: data)
            default: break
            }
            if type == "IEND" { break }
            pos = start + length + 4
        }
        let channels: Int
        switch colorType {
        case 0: channels = 1
        case 2: channels = 3
        case 3: channels = 1
        case 4: channels = 2
        case 6: channels = 4
        default: throw Failure("PNG colour type \(colorType) is not supported")
        }
        guard width > 0 && height > 0 else { throw Failure("PNG without IHDR") }
        let raw = try Inflate.zlib(idat)
        let stride = width * channels
        guard raw.count >= height * (stride + 1) else { throw Failure("PNG image data too short") }
        var pixels = [UInt8](repeating: 0, count: height * stride)
        for y in 0..<height {
            let filter = raw[y * (stride + 1)]
            let row = y * (stride + 1) + 1
            for x in 0..<stride {
                let a = x >= channels ? Int(pixels[y * stride + x - channels]) : 0
                let b = y > 0 ? Int(pixels[(y - 1) * stride + x]) : 0
                let c = (x >= channels && y > 0) ? Int(pixels[(y - 1) * stride + x - channels]) : 0
                let v = Int(raw[row + x])
                let predicted: Int
                switch filter {
                case 0: predicted = 0
                case 1: predicted = a
                case 2: predicted = b
                case 3: predicted = (a + b) / 2
                case 4: predicted = paeth(a, b, c)
                default: throw Failure("bad PNG filter \(filter)")
                }
                pixels[y * stride + x] = UInt8(truncatingIfNeeded: v + predicted)
            }
        }
        var rgb = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<width * height {
            switch colorType {
            case 2, 6:
                rgb[i * 3] = pixels[i * channels]
                rgb[i * 3 + 1] = pixels[i * channels + 1]
                rgb[i * 3 + 2] = pixels[i * channels + 2]
            case 3:
                let p = Int(pixels[i]) * 3
                guard p + 3 <= palette.count else { throw Failure("PNG palette index out of range") }
                rgb[i * 3] = palette[p]; rgb[i * 3 + 1] = palette[p + 1]; rgb[i * 3 + 2] = palette[p + 2]
            default:  // 0, 4: grey
                let g = pixels[i * channels]
                rgb[i * 3] = g; rgb[i * 3 + 1] = g; rgb[i * 3 + 2] = g
            }
        }
        return (width, height, rgb)
    }

    private static func paeth(_ a: Int, _ b: Int, _ c: Int) -> Int {
        let p = a + b - c
        let pa = abs(p - a), pb = abs(p - b), pc = abs(p - c)
        if pa <= pb && pa <= pc { return a }
        return pb <= pc ? b : c
    }
}

/// RFC 1950/1951 decompression (after Mark Adler's puff.c: canonical Huffman codes decoded bit by bit).
enum Inflate {
    private static let LBASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99,
                                115, 131, 163, 195, 227, 258]
    private static let LEXT = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
    private static let DBASE = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025,
                                1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577]
    private static let DEXT = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12,
                               13, 13]
    private static let ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]

    private struct Bits {
        let data: [UInt8]
        var pos: Int
        var buffer: UInt32 = 0
        var count = 0

        init(_ data: [UInt8], _ pos: Int) {
            self.data = data
            self.pos = pos
        }

        mutating func read(_ n: Int) throws -> Int {
            while count < n {
                guard pos < data.count else { throw PngDecoder.Failure("truncated deflate stream") }
                buffer |= UInt32(data[pos]) << UInt32(count)
                pos += 1
                count += 8
            }
            let mask = (UInt32(1) << UInt32(n)) &- 1
            let v = Int(buffer & mask)
            buffer = n == 32 ? 0 : buffer >> UInt32(n)
            count -= n
            return v
        }

        /// Stored blocks start at a byte boundary: drop the bits left of the current byte.
        mutating func align() {
            buffer = 0
            count = 0
        }
    }

    private struct Huffman {
        var counts = [Int](repeating: 0, count: 16)
        var symbols: [Int]

        init(_ lengths: [Int]) {
            symbols = [Int](repeating: 0, count: lengths.count)
            for l in lengths { counts[l] += 1 }
            var offsets = [Int](repeating: 0, count: 16)
            for len in 1..<15 { offsets[len + 1] = offsets[len] + counts[len] }
            for (symbol, l) in lengths.enumerated() where l != 0 {
                symbols[offsets[l]] = symbol
                offsets[l] += 1
            }
        }

        func decode(_ bits: inout Bits) throws -> Int {
            var code = 0, first = 0, index = 0
            for len in 1..<16 {
                code |= try bits.read(1)
                let count = counts[len]
                if code - count < first { return symbols[index + (code - first)] }
                index += count
                first += count
                first <<= 1
                code <<= 1
            }
            throw PngDecoder.Failure("bad Huffman code")
        }
    }

    static func zlib(_ z: [UInt8]) throws -> [UInt8] {
        guard z.count >= 2 && (Int(z[0]) << 8 | Int(z[1])) % 31 == 0 && z[0] & 0x0F == 8 else {
            throw PngDecoder.Failure("not a zlib stream")
        }
        var bits = Bits(z, 2)
        var out: [UInt8] = []
        var last = 0
        repeat {
            last = try bits.read(1)
            let type = try bits.read(2)
            switch type {
            case 0:
                bits.align()
                let p = bits.pos
                guard p + 4 <= z.count else { throw PngDecoder.Failure("truncated stored block") }
                let len = Int(z[p]) | Int(z[p + 1]) << 8
                let nlen = Int(z[p + 2]) | Int(z[p + 3]) << 8
                guard len == (~nlen & 0xFFFF) && p + 4 + len <= z.count else {
                    throw PngDecoder.Failure("bad stored block")
                }
                out.append(contentsOf: z[p + 4..<p + 4 + len])
                bits.pos = p + 4 + len
            case 1:
                try codes(&bits, &out, fixedLiterals, fixedDistances)
            case 2:
                let (literals, distances) = try dynamicTables(&bits)
                try codes(&bits, &out, literals, distances)
            default:
                throw PngDecoder.Failure("bad deflate block type")
            }
        } while last == 0
        return out
    }

    private static let fixedLiterals = Huffman((0..<288).map { $0 < 144 ? 8 : $0 < 256 ? 9 : $0 < 280 ? 7 : 8 })
    private static let fixedDistances = Huffman([Int](repeating: 5, count: 30))

    private static func dynamicTables(_ bits: inout Bits) throws -> (Huffman, Huffman) {
        let nlen = try bits.read(5) + 257
        let ndist = try bits.read(5) + 1
        let ncode = try bits.read(4) + 4
        var codeLengths = [Int](repeating: 0, count: 19)
        for i in 0..<ncode { codeLengths[ORDER[i]] = try bits.read(3) }
        let lencode = Huffman(codeLengths)
        var lengths: [Int] = []
        while lengths.count < nlen + ndist {
            let symbol = try lencode.decode(&bits)
            if symbol < 16 {
                lengths.append(symbol)
                continue
            }
            var value = 0
            let repeatCount: Int
            switch symbol {
            case 16:
                guard let previous = lengths.last else { throw PngDecoder.Failure("repeat with no previous length") }
                value = previous
                repeatCount = try 3 + bits.read(2)
            case 17: repeatCount = try 3 + bits.read(3)
            default: repeatCount = try 11 + bits.read(7)
            }
            guard lengths.count + repeatCount <= nlen + ndist else { throw PngDecoder.Failure("too many lengths") }
            lengths.append(contentsOf: [Int](repeating: value, count: repeatCount))
        }
        return (Huffman(Array(lengths[0..<nlen])), Huffman(Array(lengths[nlen...])))
    }

    private static func codes(_ bits: inout Bits, _ out: inout [UInt8], _ literals: Huffman,
                              _ distances: Huffman) throws {
        while true {
            let symbol = try literals.decode(&bits)
            if symbol < 256 {
                out.append(UInt8(symbol))
            } else if symbol == 256 {
                return
            } else {
                let s = symbol - 257
                guard s < 29 else { throw PngDecoder.Failure("bad length symbol") }
                let length = try LBASE[s] + bits.read(LEXT[s])
                let ds = try distances.decode(&bits)
                guard ds < 30 else { throw PngDecoder.Failure("bad distance symbol") }
                let distance = try DBASE[ds] + bits.read(DEXT[ds])
                guard distance <= out.count else { throw PngDecoder.Failure("distance too far back") }
                let from = out.count - distance
                for k in 0..<length { out.append(out[from + k]) }
            }
        }
    }
}
