import Foundation

/// A small JSON reader for manifests (Json.kt), with the canonical writer of manifest.py's `manifest_digest`
/// (sorted keys, no whitespace, ASCII escapes). Numbers keep their source text, so the canonical form of a
/// manifest written by Python is byte-identical to Python's (no float re-formatting). Objects keep key order.
public indirect enum Json: Equatable {
    case obj([(String, Json)])
    case arr([Json])
    case str(String)
    case num(String)
    case bool(Bool)
    case null

    public static func parse(_ text: String) throws -> Json {
        var reader = JsonReader(text)
        return try reader.readDocument()
    }

    public static func == (a: Json, b: Json) -> Bool {
        switch (a, b) {
        case let (.obj(x), .obj(y)): return x.count == y.count && zip(x, y).allSatisfy { pair in pair.0.0 == pair.1.0 && pair.0.1 == pair.1.1 }
        case let (.arr(x), .arr(y)): return x == y
        case let (.str(x), .str(y)), let (.num(x), .num(y)): return x == y
        case let (.bool(x), .bool(y)): return x == y
        case (.null, .null): return true
        default: return false
        }
    }

    /// An object's field (the last one of that name, as Python's json keeps), nil for other kinds.
    public subscript(key: String) -> Json? {
        guard case let .obj(fields) = self else { return nil }
        return fields.last(where: { $0.0 == key })?.1
    }

    public var fields: [(String, Json)]? { if case let .obj(f) = self { return f }; return nil }
    public var items: [Json]? { if case let .arr(a) = self { return a }; return nil }
    public var string: String? { if case let .str(s) = self { return s }; return nil }
    public var double: Double? { if case let .num(t) = self { return Double(t) }; return nil }
    public var isInt: Bool {
        if case let .num(t) = self { return !t.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) }
        return false
    }
    public var boolValue: Bool? { if case let .bool(b) = self { return b }; return nil }
}

/// Thrown for malformed JSON; callers turn it into a typed error naming the file.
public struct JsonSyntaxException: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

private struct JsonReader {
    private let s: [Unicode.Scalar]
    private var i = 0

    init(_ text: String) { s = Array(text.unicodeScalars) }

    mutating func readDocument() throws -> Json {
        let v = try value()
        skipWs()
        if i != s.count { throw fail("trailing characters") }
        return v
    }

    private func fail(_ what: String) -> JsonSyntaxException { JsonSyntaxException(message: "\(what) at offset \(i)") }

    private mutating func skipWs() {
        while i < s.count, " \t\r\n".unicodeScalars.contains(s[i]) { i += 1 }
    }

    private mutating func value() throws -> Json {
        skipWs()
        if i >= s.count { throw fail("unexpected end") }
        let c = s[i]
        switch c {
        case "{": return try obj()
        case "[": return try arr()
        case "\"":
            let text = try str()
            return .str(text)
        case "t": return try literal("true", .bool(true))
        case "f": return try literal("false", .bool(false))
        case "n": return try literal("null", .null)
        default:
            if c == "-" || (48...57).contains(c.value) { return try num() }
            throw fail("unexpected '\(c)'")
        }
    }

    private mutating func literal(_ word: String, _ v: Json) throws -> Json {
        let w = Array(word.unicodeScalars)
        if i + w.count > s.count || Array(s[i..<(i + w.count)]) != w { throw fail("bad literal") }
        i += w.count
        return v
    }

    private mutating func obj() throws -> Json {
        i += 1
        var fields: [(String, Json)] = []
        skipWs()
        if i < s.count, s[i] == "}" { i += 1; return .obj(fields) }
        while true {
            skipWs()
            if i >= s.count || s[i] != "\"" { throw fail("expected a key") }
            let key = try str()
            skipWs()
            if i >= s.count || s[i] != ":" { throw fail("expected ':'") }
            i += 1
            let v = try value()
            fields.append((key, v))
            skipWs()
            if i >= s.count { throw fail("unexpected end") }
            if s[i] == "," { i += 1; continue }
            if s[i] == "}" { i += 1; return .obj(fields) }
            throw fail("expected ',' or '}'")
        }
    }

    private mutating func arr() throws -> Json {
        i += 1
        var items: [Json] = []
        skipWs()
        if i < s.count, s[i] == "]" { i += 1; return .arr(items) }
        while true {
            let v = try value()
            items.append(v)
            skipWs()
            if i >= s.count { throw fail("unexpected end") }
            if s[i] == "," { i += 1; continue }
            if s[i] == "]" { i += 1; return .arr(items) }
            throw fail("expected ',' or ']'")
        }
    }

    /// A string; \u escapes of surrogate pairs are joined (Kotlin keeps UTF-16 units, Swift needs scalars).
    private mutating func str() throws -> String {
        i += 1
        var out = String.UnicodeScalarView()
        while true {
            if i >= s.count { throw fail("unterminated string") }
            let c = s[i]
            i += 1
            if c == "\"" { return String(out) }
            if c != "\\" { out.append(c); continue }
            if i >= s.count { throw fail("bad escape") }
            let e = s[i]
            i += 1
            switch e {
            case "\"", "\\", "/": out.append(e)
            case "b": out.append("\u{08}")
            case "f": out.append("\u{0C}")
            case "n": out.append("\n")
            case "r": out.append("\r")
            case "t": out.append("\t")
            case "u":
                var code = try hex4()
                if (0xD800..<0xDC00).contains(code), i + 6 <= s.count, s[i] == "\\", s[i + 1] == "u" {
                    i += 2
                    let low = try hex4()
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                }
                guard let scalar = Unicode.Scalar(code) else { throw fail("bad \\u escape") }
                out.append(scalar)
            default: throw fail("bad escape '\\\(e)'")
            }
        }
    }

    private mutating func hex4() throws -> UInt32 {
        if i + 4 > s.count { throw fail("bad \\u escape") }
        guard let v = UInt32(String(String.UnicodeScalarView(s[i..<(i + 4)])), radix: 16) else { throw fail("bad \\u escape") }
        i += 4
        return v
    }

    private mutating func num() throws -> Json {
        let start = i
        if s[i] == "-" { i += 1 }
        while i < s.count, (48...57).contains(s[i].value) || "+-.eE".unicodeScalars.contains(s[i]) { i += 1 }
        let text = String(String.UnicodeScalarView(s[start..<i]))
        if Double(text) == nil { throw fail("bad number '\(text)'") }
        return .num(text)
    }
}

/// Python's `json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)`.
public func canonicalJson(_ v: Json) -> String {
    var out = ""
    writeCanonical(v, &out)
    return out
}

private func writeCanonical(_ v: Json, _ out: inout String) {
    switch v {
    case let .obj(fields):
        out += "{"
        // Python sorts str keys by code point; duplicate keys keep the last value, as json.loads does.
        var last: [String: Json] = [:]
        for (k, value) in fields { last[k] = value }
        let keys = last.keys.sorted { a, b in a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars) { $0.value < $1.value } }
        for (n, key) in keys.enumerated() {
            if n > 0 { out += "," }
            writeString(key, &out)
            out += ":"
            writeCanonical(last[key]!, &out)
        }
        out += "}"
    case let .arr(items):
        out += "["
        for (n, item) in items.enumerated() {
            if n > 0 { out += "," }
            writeCanonical(item, &out)
        }
        out += "]"
    case let .str(s): writeString(s, &out)
    case let .num(t): out += t
    case let .bool(b): out += b ? "true" : "false"
    case .null: out += "null"
    }
}

private func writeString(_ s: String, _ out: inout String) {
    out += "\""
    // ensure_ascii escapes UTF-16 code units: characters past the BMP become surrogate pairs.
    for unit in s.utf16 {
        switch unit {
        case 0x22: out += "\\\""
        case 0x5C: out += "\\\\"
        case 0x0A: out += "\\n"
        case 0x0D: out += "\\r"
        case 0x09: out += "\\t"
        case 0x08: out += "\\b"
        case 0x0C: out += "\\f"
        case 0x20...0x7E: out.unicodeScalars.append(Unicode.Scalar(UInt8(unit)))
        default: out += "\\u" + hex4(unit)
        }
    }
    out += "\""
}

private func hex4(_ v: UInt16) -> String {
    let h = String(v, radix: 16)
    return String(repeating: "0", count: 4 - h.count) + h
}

/// Kotlin's Double.toInt(): toward zero, saturating, NaN -> 0 (Swift's Int(_:) traps on those).
func truncInt(_ d: Double) -> Int {
    if d.isNaN { return 0 }
    if d >= 9.2e18 { return Int.max }
    if d <= -9.2e18 { return Int.min }
    return Int(d)
}
