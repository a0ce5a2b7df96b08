import Foundation

/// A small blocking client for the JSON-lines protocol: the remote `sandgate query --connect`,
/// tests and scripts. One connection, one thread.
public final class LineClient {
    private let descriptor: Int32
    private var pending: [UInt8] = []

    public struct ClientError: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    /// Connects to `host:port` (IPv4 or a name resolving to it) with a receive timeout, from
    /// `sourceAddress` when given (an IPv4 address; tests use 127.0.0.x to act as other hosts).
    public init(host: String, port: Int, timeoutSeconds: Int = 60, sourceAddress: String? = nil) throws {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &result) == 0, let first = result else {
            throw ClientError(description: "cannot resolve \(host)")
        }
        defer { freeaddrinfo(result) }
        var candidate: UnsafeMutablePointer<addrinfo>? = first
        var connected: Int32 = -1
        while let info = candidate {
            let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
            if fd >= 0, let sourceAddress {
                var local = sockaddr_in()
                local.sin_family = sa_family_t(AF_INET)
                guard inet_pton(AF_INET, sourceAddress, &local.sin_addr) == 1 else {
                    close(fd)
                    throw ClientError(description: "bad source address \(sourceAddress)")
                }
                let bound = withUnsafePointer(to: &local) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
                guard bound == 0 else {
                    close(fd)
                    throw ClientError(description: "cannot bind to \(sourceAddress)")
                }
            }
            if fd >= 0, connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 {
                connected = fd
                break
            }
            if fd >= 0 { close(fd) }
            candidate = info.pointee.ai_next
        }
        guard connected >= 0 else { throw ClientError(description: "cannot connect to \(host):\(port)") }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(connected, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(connected, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        descriptor = connected
    }

    deinit { close(descriptor) }

    /// Sends raw bytes as they are (tests use this for split and malformed input).
    public func send(bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { throw ClientError(description: "send failed") }
            offset += sent
        }
    }

    /// Sends one line (a newline is added).
    public func send(_ line: String) throws {
        try send(bytes: Array(line.utf8) + [UInt8(ascii: "\n")])
    }

    /// Reads one line, or nil when the server closed the connection.
    public func readLine() throws -> String? {
        while true {
            if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                return line
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let received = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if received == 0 { return nil }
            guard received > 0 else { throw ClientError(description: "receive failed or timed out") }
            pending += chunk[..<received]
        }
    }

    /// Reads exactly `count` bytes, or nil when the server closed the connection first (tests of
    /// the PostgreSQL protocol read its binary messages with this).
    public func read(count: Int) throws -> [UInt8]? {
        while pending.count < count {
            var chunk = [UInt8](repeating: 0, count: 65536)
            let received = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if received == 0 { return nil }
            guard received > 0 else { throw ClientError(description: "receive failed or timed out") }
            pending += chunk[..<received]
        }
        defer { pending.removeSubrange(..<count) }
        return Array(pending[..<count])
    }

    /// Sends a request object and returns the response line.
    public func request(_ line: String) throws -> String {
        try send(line)
        guard let response = try readLine() else { throw ClientError(description: "the server closed the connection") }
        return response
    }
}
