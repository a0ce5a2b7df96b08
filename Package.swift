// swift-tools-version: 6.1
import PackageDescription

/// One settings list for every Swift target (STYLE.md).
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "sandgate",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "sandgate", targets: ["sandgate"]),
        .library(name: "SandgateCore", targets: ["SandgateCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        .systemLibrary(
            name: "CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        .systemLibrary(
            name: "CPCRE2",
            pkgConfig: "libpcre2-8",
            providers: [.apt(["libpcre2-dev"])]
        ),
        .target(name: "SandgateSQLite", dependencies: ["CSQLite"], swiftSettings: swiftSettings),
        .target(name: "SandgateSQL", swiftSettings: swiftSettings),
        /// Text helpers every layer needs (hex, UTF-8, CSV, JSON, the calendar, random tokens):
        /// below Policy and Ledger, depending on nothing.
        .target(name: "SandgateSupport", swiftSettings: swiftSettings),
        .target(
            name: "SandgatePolicy",
            dependencies: [
                "CPCRE2", "SandgateSupport",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SandgateLedger",
            dependencies: [
                "SandgateSQLite", "SandgateSupport",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SandgateLedgerPostgres",
            dependencies: [
                "SandgateLedger", "SandgateSupport",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(name: "SandgateFixtures", dependencies: ["SandgateSQLite"], swiftSettings: swiftSettings),
        .target(
            name: "SandgateCore",
            dependencies: [
                "SandgateSQL", "SandgatePolicy", "SandgateLedger", "SandgateSQLite", "SandgateSupport",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SandgateServer",
            dependencies: [
                "SandgateCore", "SandgatePolicy", "SandgateLedger", "SandgateSQLite", "SandgateSQL", "SandgateSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "sandgate",
            dependencies: [
                "SandgateCore", "SandgateServer", "SandgateFixtures", "SandgatePolicy", "SandgateLedger", "SandgateLedgerPostgres", "SandgateSupport",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "sandgate-load",
            dependencies: [
                "SandgateSQLite",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Benchmarks/sandgate-load",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "sandgate-bench",
            dependencies: ["SandgateCore", "SandgateFixtures", "SandgateSQLite", "SandgatePolicy"],
            path: "Benchmarks/sandgate-bench",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "sandgate-ledger-bench",
            dependencies: ["SandgateLedger", "SandgateLedgerPostgres", "SandgateSupport"],
            path: "Benchmarks/sandgate-ledger-bench",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SandgateTestSupport",
            dependencies: ["SandgateCore", "SandgateFixtures", "SandgateLedgerPostgres"],
            path: "Tests/SandgateTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "SandgateSupportTests", dependencies: ["SandgateSupport", "SandgateTestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "SandgateSQLiteTests", dependencies: ["SandgateSQLite"], swiftSettings: swiftSettings),
        .testTarget(
            name: "SandgateSQLTests",
            dependencies: ["SandgateSQL", "SandgateSQLite", "SandgateFixtures"],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "SandgatePolicyTests", dependencies: ["SandgatePolicy", "CPCRE2"], swiftSettings: swiftSettings),
        .testTarget(
            name: "SandgateLedgerTests",
            dependencies: ["SandgateLedger", "SandgateLedgerPostgres", "SandgateSQLite", "SandgateTestSupport", "SandgateSupport",
                           .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "SandgateFixturesTests", dependencies: ["SandgateFixtures", "SandgateSQLite"], swiftSettings: swiftSettings),
        .testTarget(
            name: "SandgateCoreTests",
            dependencies: [
                "SandgateCore", "SandgateFixtures", "SandgatePolicy", "SandgateLedger", "SandgateLedgerPostgres", "SandgateSQLite",
                "SandgateSQL", "SandgateTestSupport", "SandgateSupport", .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SandgateServerTests",
            dependencies: [
                "SandgateServer", "SandgateCore", "SandgateFixtures", "SandgateLedger", "SandgateSQLite", "SandgateTestSupport", "SandgateSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "sandgateCLITests",
            dependencies: ["sandgate", "SandgateSQLite", "SandgateServer", "SandgateTestSupport", "SandgateLedgerPostgres", "SandgateSupport"],
            swiftSettings: swiftSettings
        ),
    ]
)

// The parser fuzzer (Scripts/fuzz.sh): only with SANDGATE_FUZZ set, because libFuzzer supplies `main`.
if Context.environment["SANDGATE_FUZZ"] != nil {
    package.targets.append(.executableTarget(
        name: "sandgate-fuzz",
        dependencies: ["SandgateCore", "SandgatePolicy", "SandgateSQL", "SandgateServer"],
        path: "Fuzz/sandgate-fuzz",
        swiftSettings: swiftSettings
    ))
}
