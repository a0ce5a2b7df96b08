import Foundation
import SandgateSQLite

/// Writes the deterministic synthetic retail dataset: the same row count always gives a
/// byte-identical file (a fixed-seed generator, one transaction, no clocks).
public enum RetailFixture {
    public struct Summary: Sendable {
        public let customers: Int
        public let orders: Int
    }

    /// Generates `customers` customers and their orders into `path` (replacing any file there).
    @discardableResult
    public static func generate(customers: Int, path: String) throws -> Summary {
        guard customers >= 1, customers <= 50_000_000 else {
            throw FixtureError("--rows must be between 1 and 50000000, not \(customers)")
        }
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let staging = path + ".partial-\(ProcessInfo.processInfo.processIdentifier)"
        try? FileManager.default.removeItem(atPath: staging)
        defer { try? FileManager.default.removeItem(atPath: staging) }
        var orderCount = 0
        do {
            let db = try Connection(path: staging, mode: .readWriteCreate)
            try db.execute("""
                PRAGMA page_size = 4096; PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
                CREATE TABLE customers (
                    customer_id INTEGER PRIMARY KEY, name TEXT NOT NULL, phone TEXT NOT NULL,
                    id_card TEXT NOT NULL, email TEXT NOT NULL, city TEXT NOT NULL,
                    birth_date DATE NOT NULL, status TEXT NOT NULL, salary INTEGER NOT NULL);
                CREATE TABLE orders (
                    order_id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(customer_id),
                    amount REAL NOT NULL, channel TEXT NOT NULL, created_at TIMESTAMP NOT NULL);
                BEGIN;
                """)
            guard let insertCustomer = try db.prepare("INSERT INTO customers VALUES (?,?,?,?,?,?,?,?,?)"),
                  let insertOrder = try db.prepare("INSERT INTO orders VALUES (?,?,?,?,?)") else {
                throw FixtureError("cannot prepare inserts")
            }
            var random = SplitMix64(seed: 0x5A4D_6761_7465)
            let cityWeights = Zipf(count: cities.count, exponent: 0.9)
            let surnameWeights = Zipf(count: surnames.count, exponent: 0.8)
            for id in 1...customers {
                let city = cities[cityWeights.sample(&random)]
                let surname = surnames[surnameWeights.sample(&random)]
                let givenCount = random.next(below: 10) < 7 ? 2 : 1
                var name = surname.hanzi
                var givenPinyin = ""
                for _ in 0..<givenCount {
                    let given = givenNames[random.next(below: givenNames.count)]
                    name += given.hanzi
                    givenPinyin += given.pinyin
                }
                let birth = randomDate(&random, fromYear: 1950, toYear: 2005)
                let status = random.next(below: 100) < 85 ? "active" : (random.next(below: 3) == 0 ? "closed" : "inactive")
                let salary = 3000 + Int64(random.next(below: 1000)) * Int64(random.next(below: 60)) + Int64(random.next(below: 3000))
                try insertCustomer.bind([
                    .integer(Int64(id)), .text(name), .text(phone(&random)),
                    .text(idCard(region: city.region, birth: birth, &random)),
                    .text(email(given: givenPinyin, surname: surname.pinyin, &random)),
                    .text(city.name), .text(birth.text), .text(status), .integer(salary),
                ])
                _ = try insertCustomer.step()
                insertCustomer.reset()

                let orders = 1 + random.next(below: 4) + random.next(below: 4)
                for _ in 0..<orders {
                    orderCount += 1
                    let cents = Int64(random.next(below: 20_000)) + Int64(random.next(below: 100)) * Int64(random.next(below: 500))
                    try insertOrder.bind([
                        .integer(Int64(orderCount)), .integer(Int64(id)), .real(Double(cents + 100) / 100),
                        .text(channels[random.next(below: 10) < 4 ? 0 : random.next(below: channels.count)]),
                        .text(randomTimestamp(&random)),
                    ])
                    _ = try insertOrder.step()
                    insertOrder.reset()
                }
            }
            try db.execute("COMMIT; CREATE INDEX orders_by_customer ON orders(customer_id); CREATE INDEX customers_by_city ON customers(city);")
        }
        if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
        try FileManager.default.moveItem(atPath: staging, toPath: path)
        return Summary(customers: customers, orders: orderCount)
    }

    // MARK: Field generators

    struct Date { let year: Int, month: Int, day: Int
        var text: String { String(format: "%04d-%02d-%02d", year, month, day) }
        var compact: String { String(format: "%04d%02d%02d", year, month, day) }
    }

    static func randomDate(_ random: inout SplitMix64, fromYear: Int, toYear: Int) -> Date {
        let year = fromYear + random.next(below: toYear - fromYear + 1)
        let month = 1 + random.next(below: 12)
        let days = [31, (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        return Date(year: year, month: month, day: 1 + random.next(below: days[month - 1]))
    }

    static func randomTimestamp(_ random: inout SplitMix64) -> String {
        let date = randomDate(&random, fromYear: 2024, toYear: 2025)
        return date.text + String(format: " %02d:%02d:%02d", random.next(below: 24), random.next(below: 60), random.next(below: 60))
    }

    static let phonePrefixes = ["130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "155", "157", "158", "159", "166", "177", "180", "181", "186", "187", "188", "189", "199"]

    static func phone(_ random: inout SplitMix64) -> String {
        phonePrefixes[random.next(below: phonePrefixes.count)] + String(format: "%08d", random.next(below: 100_000_000))
    }

    /// GB 11643 resident ID: region, birth date, sequence, ISO 7064 MOD 11-2 check character.
    static func idCard(region: String, birth: Date, _ random: inout SplitMix64) -> String {
        let body = region + birth.compact + String(format: "%03d", random.next(below: 1000))
        return body + checkCharacter(body)
    }

    /// The check character of the first 17 digits of a resident ID.
    public static func checkCharacter(_ body: String) -> String {
        let weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
        let sum = zip(body.utf8, weights).reduce(0) { $0 + Int($1.0 - 48) * $1.1 }
        return String(Array("10X98765432")[sum % 11])
    }

    static let mailDomains = ["qq.com", "163.com", "126.com", "sina.com", "outlook.com", "gmail.com", "example.cn"]

    static func email(given: String, surname: String, _ random: inout SplitMix64) -> String {
        let suffix = random.next(below: 3) == 0 ? "" : String(random.next(below: 1000))
        let separator = random.next(below: 2) == 0 ? "." : "_"
        return given + separator + surname + suffix + "@" + mailDomains[random.next(below: mailDomains.count)]
    }

    struct City { let name: String, region: String }

    /// About twenty cities, most populous first (sampled with a skewed distribution).
    static let cities: [City] = [
        City(name: "Shanghai", region: "310101"), City(name: "Beijing", region: "110101"),
        City(name: "Shenzhen", region: "440303"), City(name: "Guangzhou", region: "440103"),
        City(name: "Chengdu", region: "510104"), City(name: "Chongqing", region: "500101"),
        City(name: "Hangzhou", region: "330102"), City(name: "Wuhan", region: "420102"),
        City(name: "Xi'an", region: "610102"), City(name: "Nanjing", region: "320102"),
        City(name: "Tianjin", region: "120101"), City(name: "Suzhou", region: "320502"),
        City(name: "Changsha", region: "430102"), City(name: "Zhengzhou", region: "410102"),
        City(name: "Qingdao", region: "370202"), City(name: "Shenyang", region: "210102"),
        City(name: "Dalian", region: "210202"), City(name: "Xiamen", region: "350203"),
        City(name: "Kunming", region: "530102"), City(name: "Harbin", region: "230102"),
    ]

    struct Syllable { let hanzi: String, pinyin: String }

    static let surnames: [Syllable] = [
        ("王", "wang"), ("李", "li"), ("张", "zhang"), ("刘", "liu"), ("陈", "chen"), ("杨", "yang"), ("黄", "huang"),
        ("赵", "zhao"), ("吴", "wu"), ("周", "zhou"), ("徐", "xu"), ("孙", "sun"), ("马", "ma"), ("朱", "zhu"),
        ("胡", "hu"), ("郭", "guo"), ("何", "he"), ("林", "lin"), ("罗", "luo"), ("高", "gao"), ("郑", "zheng"),
        ("梁", "liang"), ("谢", "xie"), ("宋", "song"), ("唐", "tang"), ("许", "xu"), ("韩", "han"), ("冯", "feng"),
        ("邓", "deng"), ("曹", "cao"), ("彭", "peng"), ("曾", "zeng"), ("田", "tian"), ("董", "dong"), ("潘", "pan"),
        ("袁", "yuan"), ("蒋", "jiang"), ("蔡", "cai"), ("余", "yu"), ("叶", "ye"), ("程", "cheng"), ("苏", "su"),
    ].map { Syllable(hanzi: $0.0, pinyin: $0.1) }

    static let givenNames: [Syllable] = [
        ("伟", "wei"), ("芳", "fang"), ("娜", "na"), ("秀", "xiu"), ("英", "ying"), ("敏", "min"), ("静", "jing"),
        ("丽", "li"), ("强", "qiang"), ("磊", "lei"), ("军", "jun"), ("洋", "yang"), ("勇", "yong"), ("艳", "yan"),
        ("杰", "jie"), ("娟", "juan"), ("涛", "tao"), ("明", "ming"), ("超", "chao"), ("兰", "lan"), ("霞", "xia"),
        ("平", "ping"), ("刚", "gang"), ("华", "hua"), ("建", "jian"), ("国", "guo"), ("文", "wen"), ("玉", "yu"),
        ("辉", "hui"), ("鹏", "peng"), ("飞", "fei"), ("婷", "ting"), ("雪", "xue"), ("琳", "lin"), ("宇", "yu"),
        ("浩", "hao"), ("欣", "xin"), ("晨", "chen"), ("子", "zi"), ("涵", "han"), ("轩", "xuan"), ("博", "bo"),
        ("睿", "rui"), ("思", "si"), ("佳", "jia"), ("怡", "yi"), ("嘉", "jia"), ("泽", "ze"), ("昊", "hao"),
    ].map { Syllable(hanzi: $0.0, pinyin: $0.1) }

    static let channels = ["app", "web", "store", "wechat_mini", "phone"]
}

/// A fixture could not be written.
public struct FixtureError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// SplitMix64: a tiny, fast generator whose sequence depends only on its seed.
public struct SplitMix64: Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A value in `0..<bound` (bound > 0); the modulo bias is irrelevant for test data.
    public mutating func next(below bound: Int) -> Int {
        Int(next() % UInt64(bound))
    }
}

/// Samples indices with probability proportional to 1 / (rank + 1)^exponent.
struct Zipf {
    private let cumulative: [Double]

    init(count: Int, exponent: Double) {
        var total = 0.0
        var running: [Double] = []
        for rank in 1...count {
            total += 1 / pow(Double(rank), exponent)
            running.append(total)
        }
        cumulative = running.map { $0 / total }
    }

    func sample(_ random: inout SplitMix64) -> Int {
        let point = Double(random.next() >> 11) / Double(1 << 53)
        var low = 0, high = cumulative.count - 1
        while low < high {
            let middle = (low + high) / 2
            if cumulative[middle] < point { low = middle + 1 } else { high = middle }
        }
        return low
    }
}
