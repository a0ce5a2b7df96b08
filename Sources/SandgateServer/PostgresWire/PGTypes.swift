import NIOCore
import SandgateCore
import SandgateSQLite
import SandgateSupport

/// PostgreSQL type OIDs sandgate declares, from the core's column kinds.
enum PGType: Int32 {
    case bool = 16, bytea = 17, int8 = 20, int2 = 21, int4 = 23, text = 25, oid = 26, float4 = 700, float8 = 701
    case unknown = 705, varchar = 1043, date = 1082, timestamp = 1114, timestamptz = 1184, name = 19, char = 18

    init(_ kind: ColumnType.Kind) {
        switch kind {
        case .integer: self = .int8
        case .real: self = .float8
        case .text: self = .text
        case .blob: self = .bytea
        case .date: self = .date
        case .timestamp: self = .timestamp
        }
    }

    /// `typlen` of RowDescription.
    var size: Int16 {
        switch self {
        case .bool, .char: 1
        case .int2: 2
        case .int4, .oid, .float4, .date: 4
        case .int8, .float8, .timestamp, .timestamptz: 8
        case .name: 64
        default: -1
        }
    }

    var name: String {
        switch self {
        case .bool: "boolean"
        case .bytea: "bytea"
        case .int8: "bigint"
        case .int2: "smallint"
        case .int4: "integer"
        case .text: "text"
        case .oid: "oid"
        case .float4: "real"
        case .float8: "double precision"
        case .unknown: "unknown"
        case .varchar: "character varying"
        case .date: "date"
        case .timestamp: "timestamp without time zone"
        case .timestamptz: "timestamp with time zone"
        case .name: "name"
        case .char: "\"char\""
        }
    }
}

/// One result column as RowDescription declares it.
struct PGColumn {
    let name: String
    let type: PGType
}

/// Encodes values into DataRow fields, in text (format 0) or binary (format 1).
enum PGValueEncoder {

    /// Writes one field (length and bytes) for `cell` in a column of `type`.
    static func write(_ cell: QueryResult.Cell, type: PGType, binary: Bool, into buffer: inout ByteBuffer) {
        switch cell {
        case .null:
            buffer.writeInteger(Int32(-1))
        case .integer(let value):
            if binary, type == .int8 { return field(&buffer) { $0.writeInteger(value) } }
            if binary, type == .float8 { return field(&buffer) { $0.writeInteger(Double(value).bitPattern) } }
            if binary, type == .bool { return field(&buffer) { $0.writeInteger(UInt8(value != 0 ? 1 : 0)) } }
            if type == .bool { return field(&buffer) { $0.writeString(value != 0 ? "t" : "f") } }
            field(&buffer) { $0.writeString(String(value)) }
        case .real(let value):
            if binary, type == .float8 { return field(&buffer) { $0.writeInteger(value.bitPattern) } }
            field(&buffer) { $0.writeString(text(value)) }
        case .text(let bytes):
            if binary, type == .date, let days = Calendar.days(bytes) { return field(&buffer) { $0.writeInteger(Int32(clamping: days)) } }
            if binary, type == .timestamp, let micros = Calendar.microseconds(bytes) { return field(&buffer) { $0.writeInteger(micros) } }
            // The server announces client_encoding UTF8: invalid UTF-8 (`CAST(x'ff' AS TEXT)`)
            // goes out with U+FFFD in its place, as JSON lines writes it.
            guard UTF8Text.isValid(bytes) else { return field(&buffer) { $0.writeString(String(decoding: bytes, as: UTF8.self)) } }
            field(&buffer) { buffer in
                buffer.writeBytes(bytes)
                // ISO `T` becomes PostgreSQL's space, the form its clients parse.
                if type == .timestamp, bytes.count > 10, bytes[10] == UInt8(ascii: "T") {
                    buffer.setInteger(UInt8(ascii: " "), at: buffer.writerIndex - bytes.count + 10)
                }
            }
        case .blob(let bytes):
            if binary, type == .bytea { return field(&buffer) { $0.writeBytes(bytes) } }
            field(&buffer) { buffer in
                buffer.writeStaticString("\\x")
                for byte in bytes {
                    buffer.writeInteger(Hex.digit(byte >> 4))
                    buffer.writeInteger(Hex.digit(byte))
                }
            }
        }
    }

    /// float8 text as PostgreSQL prints it (shortest round-trip, Infinity, NaN).
    static func text(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "Infinity" : "-Infinity" }
        return "\(value)"
    }

    @inline(__always) static func field(_ buffer: inout ByteBuffer, _ body: (inout ByteBuffer) -> Void) {
        let lengthIndex = buffer.writerIndex
        buffer.writeInteger(Int32(0))
        body(&buffer)
        buffer.setInteger(Int32(buffer.writerIndex - lengthIndex - 4), at: lengthIndex)
    }
}

/// Decodes Bind parameters into SQLite values by their declared type and format.
enum PGValueDecoder {
    static func decode(_ value: ByteBuffer?, type: Int32, binary: Bool) -> Result<SQLValue, GatewayError> {
        guard var value else { return .success(.null) }
        let bytes = value.readableBytesView
        if !binary {
            let text = String(decoding: bytes, as: UTF8.self)
            switch PGType(rawValue: type) {
            case .int2?, .int4?, .int8?, .oid?:
                guard let number = Int64(text.trimmingSpaces) else { return .failure(invalid(text, "an integer")) }
                return .success(.integer(number))
            case .float4?, .float8?:
                guard let number = Double(text.trimmingSpaces) else { return .failure(invalid(text, "a number")) }
                return .success(.real(number))
            case .bool?:
                switch text.lowercased() {
                case "t", "true", "1", "on", "yes", "y": return .success(.integer(1))
                case "f", "false", "0", "off", "no", "n": return .success(.integer(0))
                default: return .failure(invalid(text, "a boolean"))
                }
            case .bytea?:
                guard text.hasPrefix("\\x"), let decoded = Hex.decode(String(text.dropFirst(2))) else { return .failure(invalid(text, "bytea hex (\\x…)")) }
                return .success(.blob(decoded))
            default:
                return .success(.text(text))
            }
        }
        switch (PGType(rawValue: type), bytes.count) {
        case (.int2?, 2): return .success(.integer(Int64(value.readInteger(as: Int16.self) ?? 0)))
        case (.int4?, 4), (.oid?, 4): return .success(.integer(Int64(value.readInteger(as: Int32.self) ?? 0)))
        case (.int8?, 8): return .success(.integer(value.readInteger(as: Int64.self) ?? 0))
        case (.float4?, 4): return .success(.real(Double(Float(bitPattern: value.readInteger(as: UInt32.self) ?? 0))))
        case (.float8?, 8): return .success(.real(Double(bitPattern: value.readInteger(as: UInt64.self) ?? 0)))
        case (.bool?, 1): return .success(.integer((value.readInteger(as: UInt8.self) ?? 0) != 0 ? 1 : 0))
        case (.bytea?, _): return .success(.blob(Array(bytes)))
        case (.text?, _), (.varchar?, _), (.name?, _), (.unknown?, _): return .success(.text(String(decoding: bytes, as: UTF8.self)))
        case (.date?, 4): return .success(.text(Calendar.dateText(days: Int64(value.readInteger(as: Int32.self) ?? 0))))
        case (.timestamp?, 8), (.timestamptz?, 8):
            // PostgreSQL's own range (4713 BC to 294276 AD); beyond it the arithmetic would overflow (red team).
            let micros = value.readInteger(as: Int64.self) ?? 0
            guard Calendar.timestampRange.contains(micros) else {
                return .failure(GatewayError(.badRequest, "timestamp parameter out of range", hint: "PostgreSQL's range: 4713 BC to 294276 AD"))
            }
            return .success(.text(Calendar.timestampText(micros: micros)))
        default:
            return .failure(GatewayError(.badRequest, "binary parameters of type \(type) (\(bytes.count) bytes) are not supported",
                                         hint: "send parameters in text format, or as int2/4/8, float4/8, text, bool, bytea, date or timestamp"))
        }
    }

    static func invalid(_ text: String, _ what: String) -> GatewayError {
        GatewayError(.badRequest, "parameter value is not \(what)", hint: "bind a value of the parameter's declared type")
    }
}

/// Proleptic Gregorian day numbers relative to PostgreSQL's epoch, 2000-01-01 (binary dates and
/// timestamps count from there).
enum Calendar {
    /// Days from 1970-01-01 to y-m-d.
    static func daysFromCivil(_ year: Int64, _ month: Int64, _ day: Int64) -> Int64 {
        Timestamp.daysSinceEpoch(year: year, month: month, day: day)
    }

    static let epochOffset: Int64 = 10_957  // 1970-01-01 → 2000-01-01
    /// Microseconds from 2000-01-01 that PostgreSQL accepts as timestamps.
    static let timestampRange: ClosedRange<Int64> = -211_813_488_000_000_000 ... 9_223_371_331_199_999_999

    static func number(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Int64? {
        var value: Int64 = 0
        for index in range {
            guard index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39 else { return nil }
            value = value * 10 + Int64(bytes[index] - 0x30)
        }
        return value
    }

    static func days(_ bytes: UnsafeRawBufferPointer) -> Int64? {
        guard bytes.count >= 10, let year = number(bytes, 0..<4), let month = number(bytes, 5..<7), let day = number(bytes, 8..<10) else { return nil }
        return daysFromCivil(year, month, day) - epochOffset
    }

    static func microseconds(_ bytes: UnsafeRawBufferPointer) -> Int64? {
        guard let days = days(bytes) else { return nil }
        var micros = days * 86_400_000_000
        if bytes.count >= 19, let hour = number(bytes, 11..<13), let minute = number(bytes, 14..<16), let second = number(bytes, 17..<19) {
            micros += ((hour * 60 + minute) * 60 + second) * 1_000_000
            if bytes.count > 20 {
                var fraction: Int64 = 0, scale: Int64 = 100_000
                for index in 20..<min(bytes.count, 26) {
                    guard bytes[index] >= 0x30, bytes[index] <= 0x39 else { break }
                    fraction += Int64(bytes[index] - 0x30) * scale
                    scale /= 10
                }
                micros += fraction
            }
        }
        return micros
    }

    /// (year, month, day) of a day counted from 2000-01-01.
    static func civil(days: Int64) -> (Int64, Int64, Int64) { Timestamp.civilDate(daysSinceEpoch: days + epochOffset) }

    static func pad(_ value: Int64, _ width: Int) -> String { Timestamp.pad(value, width) }

    static func dateText(days: Int64) -> String {
        let (year, month, day) = civil(days: days)
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))"
    }

    static func timestampText(micros: Int64) -> String {
        let days = micros >= 0 ? micros / 86_400_000_000 : -((-(micros + 1)) / 86_400_000_000) - 1
        let rest = micros - days * 86_400_000_000
        let seconds = rest / 1_000_000, fraction = rest % 1_000_000
        var text = dateText(days: days) + " \(pad(seconds / 3600, 2)):\(pad(seconds / 60 % 60, 2)):\(pad(seconds % 60, 2))"
        if fraction > 0 { text += "." + pad(fraction, 6) }
        return text
    }
}

extension String {
    var trimmingSpaces: String {
        String(unicodeScalars.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed().map(Character.init))
    }
}
