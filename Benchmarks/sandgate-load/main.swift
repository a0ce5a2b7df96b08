// Load generator for the JSON-lines server (issue 4): closed-loop clients on one NIO event loop,
// each with one request in flight; reports throughput and latency percentiles. With --raw it
// instead measures SQLite itself running the same statements on N threads, for comparison.
//
//   sandgate-load --port 7878 --connections 32 --seconds 10 --query pk|city|ping --rows 1000000
//   sandgate-load --raw SNAPSHOT.sqlite --threads 2 --seconds 10 --query city --rows 1000000

import Foundation
import NIOCore
import NIOPosix
import SandgateSQLite

struct Options {
    var host = "127.0.0.1"
    var port = 7878
    var connections = 32
    var seconds = 10.0
    var query = "pk"
    var rows = 1_000_000
    var consumer = "bench"
    var key = ProcessInfo.processInfo.environment["SANDGATE_KEY"] ?? ""
    var dataset = "retail"
    var raw: String?
    var threads = 2

    init(_ arguments: [String]) {
        var iterator = arguments.dropFirst().makeIterator()
        while let flag = iterator.next() {
            let value = iterator.next() ?? ""
            switch flag {
            case "--host": host = value
            case "--port": port = Int(value) ?? port
            case "--connections": connections = max(1, Int(value) ?? connections)
            case "--seconds": seconds = max(0.5, Double(value) ?? seconds)
            case "--query": query = value
            case "--rows": rows = max(1, Int(value) ?? rows)
            case "--consumer": consumer = value
            case "--key": key = value
            case "--dataset": dataset = value
            case "--raw": raw = value
            case "--threads": threads = max(1, Int(value) ?? threads)
            default: FileHandle.standardError.write(Data("unknown option \(flag)\n".utf8)); exit(2)
            }
        }
    }
}

let cities = ["Shanghai", "Beijing", "Shenzhen", "Guangzhou", "Chengdu", "Chongqing", "Hangzhou", "Wuhan", "Xi'an", "Nanjing",
              "Tianjin", "Suzhou", "Changsha", "Zhengzhou", "Qingdao", "Shenyang", "Dalian", "Xiamen", "Kunming", "Harbin"]
let pkSQL = "SELECT customer_id, city, status FROM customers WHERE customer_id = ?"
let citySQL = "SELECT city, count(*) FROM customers WHERE city = ? GROUP BY city"

func percentile(_ sorted: [UInt64], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    return Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]) / 1e6
}

func report(_ label: String, latencies: [UInt64], errors: Int, seconds: Double) {
    let sorted = latencies.sorted()
    print(String(format: "%@: %d ok, %d errors in %.1f s → %.0f req/s; latency p50 %.3f ms, p99 %.3f ms, max %.3f ms",
                 label, sorted.count, errors, seconds, Double(sorted.count) / seconds,
                 percentile(sorted, 0.5), percentile(sorted, 0.99), Double(sorted.last ?? 0) / 1e6))
}

let options = Options(CommandLine.arguments)

/// Latencies gathered from several threads. `@unchecked Sendable`: guarded by `lock`.
final class Collected: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [UInt64] = []
    func add(_ values: [UInt64]) { lock.lock(); stored += values; lock.unlock() }
    var values: [UInt64] { lock.lock(); defer { lock.unlock() }; return stored }
}

// MARK: Raw SQLite baseline

if let path = options.raw {
    let sql = options.query == "pk" ? pkSQL : citySQL
    let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(options.seconds * 1e9)
    let collected = Collected()
    let group = DispatchGroup()
    for thread in 0..<options.threads {
        group.enter()
        Thread.detachNewThread {
            var local: [UInt64] = []
            var random = SystemRandomNumberGenerator()
            do {
                let db = try Connection(path: path, mode: .readOnlyImmutable)
                guard let statement = try db.prepare(sql) else { return }
                while DispatchTime.now().uptimeNanoseconds < deadline {
                    let start = DispatchTime.now().uptimeNanoseconds
                    let parameter: SQLValue = options.query == "pk"
                        ? .integer(Int64.random(in: 1...Int64(options.rows), using: &random))
                        : .text(cities[Int.random(in: 0..<cities.count, using: &random)])
                    statement.reset()
                    try statement.bind([parameter])
                    while try statement.step() { _ = statement.value(at: 0) }
                    local.append(DispatchTime.now().uptimeNanoseconds - start)
                }
            } catch {
                print("thread \(thread): \(error)")
            }
            collected.add(local)
            group.leave()
        }
    }
    group.wait()
    report("raw SQLite \(options.query), \(options.threads) threads", latencies: collected.values, errors: 0, seconds: options.seconds)
    exit(0)
}

// MARK: Gateway load

final class LoadHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let options: Options
    let deadline: UInt64
    let done: EventLoopPromise<([UInt64], Int)>
    var buffer = ByteBuffer()
    var latencies: [UInt64] = []
    var errors = 0
    var sentAt: UInt64 = 0
    var authenticated = false
    var random = SystemRandomNumberGenerator()
    var counter = 0

    init(options: Options, deadline: UInt64, done: EventLoopPromise<([UInt64], Int)>) {
        self.options = options
        self.deadline = deadline
        self.done = done
        latencies.reserveCapacity(200_000)
    }

    func channelActive(context: ChannelHandlerContext) {
        send(#"{"op":"auth","consumer":"\#(options.consumer)","key":"\#(options.key)"}"#, context: context)
    }

    func nextRequest() -> String {
        counter += 1
        switch options.query {
        case "ping": return #"{"id":\#(counter),"op":"ping"}"#
        case "pk": return #"{"id":\#(counter),"op":"query","dataset":"\#(options.dataset)","sql":"\#(pkSQL)","params":[\#(Int.random(in: 1...options.rows, using: &random))]}"#
        default: return #"{"id":\#(counter),"op":"query","dataset":"\#(options.dataset)","sql":"\#(citySQL)","params":["\#(cities[Int.random(in: 0..<cities.count, using: &random)])"]}"#
        }
    }

    func send(_ line: String, context: ChannelHandlerContext) {
        var out = context.channel.allocator.buffer(capacity: line.utf8.count + 1)
        out.writeString(line)
        out.writeInteger(UInt8(ascii: "\n"))
        sentAt = DispatchTime.now().uptimeNanoseconds
        context.writeAndFlush(wrapOutboundOut(out), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        buffer.writeBuffer(&incoming)
        while let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
            let length = newline - buffer.readableBytesView.startIndex
            let line = buffer.readString(length: length) ?? ""
            buffer.moveReaderIndex(forwardBy: 1)
            let now = DispatchTime.now().uptimeNanoseconds
            let ok = line.contains("\"ok\":true")
            if !authenticated {
                guard ok else {
                    print("auth failed: \(line)")
                    done.succeed((latencies, errors + 1))
                    context.close(promise: nil)
                    return
                }
                authenticated = true
            } else {
                if ok { latencies.append(now - sentAt) } else { errors += 1 }
            }
            if now >= deadline {
                done.succeed((latencies, errors))
                context.close(promise: nil)
                return
            }
            send(nextRequest(), context: context)
        }
        buffer.discardReadBytes()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        done.succeed((latencies, errors + 1))
        context.close(promise: nil)
    }
}

let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let started = DispatchTime.now().uptimeNanoseconds
let deadline = started + UInt64(options.seconds * 1e9)
var futures: [EventLoopFuture<([UInt64], Int)>] = []
for _ in 0..<options.connections {
    let loop = group.next()
    let promise = loop.makePromise(of: ([UInt64], Int).self)
    let handler = LoadHandler(options: options, deadline: deadline, done: promise)
    let bootstrap = ClientBootstrap(group: loop)
        .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler) }
        }
    bootstrap.connect(host: options.host, port: options.port).whenFailure { error in promise.fail(error) }
    futures.append(promise.futureResult)
}
var latencies: [UInt64] = []
var errors = 0
for future in futures {
    do {
        let (values, failed) = try future.wait()
        latencies += values
        errors += failed
    } catch {
        print("connection failed: \(error)")
        errors += 1
    }
}
let elapsed = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
report("gateway \(options.query), \(options.connections) connections", latencies: latencies, errors: errors, seconds: elapsed)
try? group.syncShutdownGracefully()
