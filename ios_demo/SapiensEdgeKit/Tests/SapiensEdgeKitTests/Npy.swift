import Foundation

/// A little-endian .npy array (float32/64, int32/64, uint8), values as doubles (Npy.kt).
struct Npy {
    let shape: [Int]
    let descr: String
    let data: [Double]

    func floats() -> [Float] { data.map { Float($0) } }
    func ints() -> [Int] { data.map { Int($0) } }
    /// int32 pixels (golden.py's to_argb: 0xAARRGGBB viewed as int32) as UInt32.
    func pixels() -> [UInt32] { data.map { UInt32(bitPattern: Int32($0)) } }

    static func read(_ url: URL) throws -> Npy {
        let bytes = [UInt8](try Data(contentsOf: url))
        guard bytes.count > 10, bytes[0] == 0x93, String(decoding: bytes[1..<6], as: UTF8.self) == "NUMPY" else {
            throw NpyError(message: "\(url.path) is not .npy")
        }
        let major = bytes[6]
        var headerLen = Int(bytes[8]) + 256 * Int(bytes[9])
        if major != 1 { headerLen += 65536 * Int(bytes[10]) + 16_777_216 * Int(bytes[11]) }
        let start = major == 1 ? 10 : 12
        let header = String(decoding: bytes[start..<(start + headerLen)], as: UTF8.self)
        guard header.contains("'fortran_order': False") else { throw NpyError(message: "\(url.path) is Fortran-ordered") }
        let descr = try between(header, "'descr': '", "'", url)
        let shape = try between(header, "'shape': (", ")", url).split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.map { Int($0)! }
        let n = shape.reduce(1, *)
        let body = Array(bytes[(start + headerLen)...])
        var data = [Double](repeating: 0, count: n)
        try body.withUnsafeBytes { raw in
            for i in 0..<n {
                switch descr {
                case "<f4": data[i] = Double(Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))))
                case "<f8": data[i] = Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))
                case "<i4": data[i] = Double(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)))
                case "<i8": data[i] = Double(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)))
                case "|u1": data[i] = Double(raw[i])
                default: throw NpyError(message: "\(url.path): dtype \(descr) not supported")
                }
            }
        }
        return Npy(shape: shape, descr: descr, data: data)
    }

    private static func between(_ s: String, _ open: String, _ close: String, _ url: URL) throws -> String {
        guard let a = s.range(of: open), let b = s.range(of: close, range: a.upperBound..<s.endIndex) else {
            throw NpyError(message: "\(url.path): no \(open) in the header")
        }
        return String(s[a.upperBound..<b.lowerBound])
    }
}

struct NpyError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}
