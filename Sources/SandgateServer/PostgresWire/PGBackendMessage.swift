import NIOCore
import SandgateCore

/// The fields of an ErrorResponse (or a FATAL one that ends the connection).
struct PGErrorFields: Sendable, Equatable {
    var severity = "ERROR"
    var code: String
    var message: String
    var hint = ""

    init(severity: String = "ERROR", code: String, message: String, hint: String = "") {
        self.severity = severity
        self.code = code
        self.message = message
        self.hint = hint
    }

    /// A gateway error as PostgreSQL clients see it: SQLSTATE, `<sandgate code>: <message>`, the hint.
    init(_ error: GatewayError) {
        self.init(code: Self.sqlState(error.code), message: "\(error.code.rawValue): \(error.message)", hint: error.hint)
    }

    /// The SQLSTATE of each sandgate error code (CONTRACT.md §6, Errors).
    static func sqlState(_ code: ErrorCode) -> String {
        switch code {
        case .authFailed: "28P01"
        case .notGranted, .columnNotAllowed, .functionNotAllowed, .aggregateRequired, .shapeNotAllowed, .notASelect, .purposeNotAllowed: "42501"
        case .unknownDataset: "3D000"
        case .syntaxError: "42601"
        case .noSuchTable: "42P01"
        case .noSuchColumn: "42703"
        case .noSuchFunction: "42883"
        case .budgetExceeded, .resultTooLarge, .rowsLimitExceeded, .requestTooLarge: "54000"
        case .timeout, .cancelled: "57014"
        case .quotaExceeded, .privacyBudgetExhausted: "53400"
        case .overloaded: "53000"
        case .badRequest: "22000"
        case .unavailable: "57P03"
        case .internal: "XX000"
        }
    }
}

/// One message from the server to the client. The protocol state decides which to send; the
/// handler encodes them (`ByteBuffer.writeBackendMessage`), so the state never touches bytes.
enum PGBackendMessage: Sendable {
    /// AuthenticationSASL offering SCRAM-SHA-256 only.
    case authenticationSASL
    case authenticationSASLContinue(String)
    case authenticationSASLFinal(String)
    case authenticationOk
    case parameterStatus(name: String, value: String)
    case backendKeyData(processID: Int32, secret: Int32)
    case readyForQuery(inTransaction: Bool)
    case error(PGErrorFields)
    case notice(String)
    case rowDescription([PGColumn], binary: [Bool])
    case parameterDescription([Int32])
    /// DataRows of a range of a portal's rows (one message per row on the wire).
    case dataRows(PGRowBatch)
    case commandComplete(String)
    case emptyQuery
    case parseComplete
    case bindComplete
    case closeComplete
    case noData
    case portalSuspended

    /// The message's type byte on the wire (tests read a sequence of them like the socket tests do).
    var type: UInt8 {
        switch self {
        case .authenticationSASL, .authenticationSASLContinue, .authenticationSASLFinal, .authenticationOk: UInt8(ascii: "R")
        case .parameterStatus: UInt8(ascii: "S")
        case .backendKeyData: UInt8(ascii: "K")
        case .readyForQuery: UInt8(ascii: "Z")
        case .error: UInt8(ascii: "E")
        case .notice: UInt8(ascii: "N")
        case .rowDescription: UInt8(ascii: "T")
        case .parameterDescription: UInt8(ascii: "t")
        case .dataRows: UInt8(ascii: "D")
        case .commandComplete: UInt8(ascii: "C")
        case .emptyQuery: UInt8(ascii: "I")
        case .parseComplete: UInt8(ascii: "1")
        case .bindComplete: UInt8(ascii: "2")
        case .closeComplete: UInt8(ascii: "3")
        case .noData: UInt8(ascii: "n")
        case .portalSuspended: UInt8(ascii: "s")
        }
    }
}

extension ByteBuffer {
    /// Writes `message` in protocol 3.0 framing.
    mutating func writeBackendMessage(_ message: PGBackendMessage) {
        switch message {
        case .authenticationSASL:
            writePGMessage(message.type) { buffer in
                buffer.writeInteger(Int32(10))
                buffer.writePGString("SCRAM-SHA-256")
                buffer.writeInteger(UInt8(0))
            }
        case .authenticationSASLContinue(let text): writeAuthentication(11, text)
        case .authenticationSASLFinal(let text): writeAuthentication(12, text)
        case .authenticationOk: writePGMessage(message.type) { $0.writeInteger(Int32(0)) }
        case .parameterStatus(let name, let value):
            writePGMessage(message.type) { buffer in
                buffer.writePGString(name)
                buffer.writePGString(value)
            }
        case .backendKeyData(let processID, let secret):
            writePGMessage(message.type) { buffer in
                buffer.writeInteger(processID)
                buffer.writeInteger(secret)
            }
        case .readyForQuery(let inTransaction):
            writePGMessage(message.type) { $0.writeInteger(UInt8(ascii: inTransaction ? "T" : "I")) }
        case .error(let fields): writePGMessage(message.type) { $0.writeFields(fields) }
        case .notice(let text):
            writePGMessage(message.type) { $0.writeFields(PGErrorFields(severity: "NOTICE", code: "00000", message: text)) }
        case .rowDescription(let columns, let binary): writeRowDescription(columns, binary: binary)
        case .parameterDescription(let types):
            writePGMessage(message.type) { buffer in
                buffer.writeInteger(Int16(clamping: types.count))
                for type in types { buffer.writeInteger(type) }
            }
        case .dataRows(let batch): batch.write(into: &self)
        case .commandComplete(let tag): writePGMessage(message.type) { $0.writePGString(tag) }
        case .emptyQuery, .parseComplete, .bindComplete, .closeComplete, .noData, .portalSuspended:
            writePGMessage(message.type) { _ in }
        }
    }

    private mutating func writeAuthentication(_ code: Int32, _ text: String) {
        writePGMessage(UInt8(ascii: "R")) { buffer in
            buffer.writeInteger(code)
            buffer.writeString(text)
        }
    }

    private mutating func writeFields(_ fields: PGErrorFields) {
        for (field, value) in [(UInt8(ascii: "S"), fields.severity), (UInt8(ascii: "V"), fields.severity), (UInt8(ascii: "C"), fields.code), (UInt8(ascii: "M"), fields.message)] {
            writeInteger(field)
            writePGString(value)
        }
        if !fields.hint.isEmpty {
            writeInteger(UInt8(ascii: "H"))
            writePGString(fields.hint)
        }
        writeInteger(UInt8(0))
    }

    private mutating func writeRowDescription(_ columns: [PGColumn], binary: [Bool]) {
        writePGMessage(UInt8(ascii: "T")) { buffer in
            buffer.writeInteger(Int16(clamping: columns.count))
            for (index, column) in columns.enumerated() {
                buffer.writePGString(column.name)
                buffer.writeInteger(Int32(0))
                buffer.writeInteger(Int16(0))
                buffer.writeInteger(column.type.rawValue)
                buffer.writeInteger(column.type.size)
                buffer.writeInteger(Int32(-1))
                buffer.writeInteger(Int16(index < binary.count && binary[index] ? 1 : 0))
            }
        }
    }
}
