import SandgateSQLite

/// Replacements for SQLite's functions whose cost one call can blow up (DESIGN.md §2.3, issue 7
/// item 7). SQLite's progress handler never fires inside one function call, so
/// `instr(hex(zeroblob(800000)), hex(zeroblob(400000)) || '1')` ran 15 s against a 2 s budget.
/// Registered under the built-in names on every sandbox connection (a connection's own functions
/// take precedence over SQLite's), with SQLite's semantics:
/// - `instr` and `replace` search with `memmem` (two-way algorithm, linear), not byte by byte;
/// - `trim`/`ltrim`/`rtrim` with a character set look characters up in a table, not a list;
/// - `like` and `glob` match without recursion and check the query's deadline as they go.
enum BoundedFunctions {
    /// How many inner-loop steps run between two looks at the clock.
    static let deadlineCheckInterval = 1 << 16

    static func register(on connection: Connection, budget: BudgetState) throws(SQLiteError) {
        // Each call first looks at the clock: rows that each cost milliseconds must not run on
        // for the many rows between two calls of the progress handler.
        try connection.createFunction(name: "instr", argumentCount: 2, deterministic: true) { arguments, result in
            if budget.deadlinePassed() { return result.setInterrupted() }
            instr(arguments, result)
        }
        try connection.createFunction(name: "replace", argumentCount: 3, deterministic: true) { arguments, result in
            if budget.deadlinePassed() { return result.setInterrupted() }
            replace(arguments, result, budget: budget)
        }
        for (name, sides) in [("trim", TrimSides.both), ("ltrim", .leading), ("rtrim", .trailing)] {
            try connection.createFunction(name: name, argumentCount: 2, deterministic: true) { arguments, result in
                if budget.deadlinePassed() { return result.setInterrupted() }
                trim(arguments, result, sides: sides, budget: budget)
            }
        }
        for count: Int32 in [2, 3] {
            try connection.createFunction(name: "like", argumentCount: count, deterministic: true) { arguments, result in
                if budget.deadlinePassed() { return result.setInterrupted() }
                like(arguments, result, glob: false, budget: budget)
            }
        }
        try connection.createFunction(name: "glob", argumentCount: 2, deterministic: true) { arguments, result in
            if budget.deadlinePassed() { return result.setInterrupted() }
            like(arguments, result, glob: true, budget: budget)
        }
    }

    // MARK: instr, replace

    /// `instr(X, Y)`: the 1-based position of the first Y in X, in characters (bytes when both
    /// are blobs); 1 for an empty Y; NULL when either is NULL.
    static func instr(_ arguments: FunctionArguments, _ result: FunctionResult) {
        let haystackType = arguments.type(at: 0), needleType = arguments.type(at: 1)
        guard haystackType != .null, needleType != .null else { return result.setNull() }
        let isText = !(haystackType == .blob && needleType == .blob)
        arguments.withText(at: 0) { haystack in
            arguments.withText(at: 1) { needle in
                guard needle.count > 0 else { return result.setInteger(1) }
                var from = 0
                while let offset = find(needle, in: haystack, from: from) {
                    // SQLite compares only at character starts (and always at the first byte).
                    if isText, offset > 0, haystack[offset] & 0xC0 == 0x80 {
                        from = offset + 1
                        continue
                    }
                    guard isText else { return result.setInteger(Int64(offset + 1)) }
                    var position: Int64 = 1
                    var index = 1
                    while index <= offset {
                        if haystack[index] & 0xC0 != 0x80 { position += 1 }
                        index += 1
                    }
                    return result.setInteger(position)
                }
                result.setInteger(0)
            }
        }
    }

    /// The byte offset of the first `needle` in `haystack` at or after `from`.
    static func find(_ needle: UnsafeBufferPointer<UInt8>, in haystack: UnsafeBufferPointer<UInt8>, from: Int) -> Int? {
        ByteSearch.firstOffset(of: needle, in: haystack, from: from)
    }

    /// `replace(X, Y, Z)`: every Y in X replaced by Z, bytewise; X unchanged when Y is empty.
    static func replace(_ arguments: FunctionArguments, _ result: FunctionResult, budget: BudgetState) {
        let lengthLimit = budget.lengthLimit
        guard arguments.type(at: 0) != .null, arguments.type(at: 1) != .null, arguments.type(at: 2) != .null else {
            return result.setNull()
        }
        arguments.withText(at: 0) { subject in
            arguments.withText(at: 1) { pattern in
                // SQLite tests the first byte, so a pattern starting with NUL also counts as empty.
                guard pattern.count > 0, pattern[0] != 0 else { return result.setArgument(arguments, at: 0) }
                arguments.withText(at: 2) { replacement in
                    var output: [UInt8] = []
                    var from = 0, found = 0
                    while let offset = find(pattern, in: subject, from: from) {
                        output.append(contentsOf: UnsafeBufferPointer(rebasing: subject[from..<offset]))
                        output.append(contentsOf: replacement)
                        from = offset + pattern.count
                        if output.count > lengthLimit { return result.setTooBig() }
                        found &+= 1
                        if found % deadlineCheckInterval == 0, budget.deadlinePassed() { return result.setInterrupted() }
                    }
                    if from == 0 { return result.setText(subject) }
                    output.append(contentsOf: UnsafeBufferPointer(rebasing: subject[from...]))
                    if output.count > lengthLimit { return result.setTooBig() }
                    output.withUnsafeBufferPointer { result.setText($0) }
                }
            }
        }
    }

    // MARK: trim

    enum TrimSides { case leading, trailing, both }

    /// `trim(X, Y)`: the characters of Y removed from X's ends, SQLite's way (the first character
    /// of Y, in Y's order, whose bytes match wins). Linear in both lengths, and it watches the
    /// deadline (an 8 MB X by an 8 MB Y must not outlive the budget).
    static func trim(_ arguments: FunctionArguments, _ result: FunctionResult, sides: TrimSides, budget: BudgetState) {
        guard arguments.type(at: 0) != .null, arguments.type(at: 1) != .null else { return result.setNull() }
        arguments.withText(at: 0) { input in
            arguments.withText(at: 1) { set in
                guard let characters = CharacterSet(set, budget: budget) else { return result.setInterrupted() }
                var start = 0, end = input.count, steps = 0
                if sides != .trailing {
                    while start < end, let length = characters.match(input, at: start, limit: end) {
                        start += length
                        steps &+= 1
                        if steps % deadlineCheckInterval == 0, budget.deadlinePassed() { return result.setInterrupted() }
                    }
                }
                if sides != .leading {
                    while start < end, let length = characters.matchBackward(input, endingAt: end, limit: start) {
                        end -= length
                        steps &+= 1
                        if steps % deadlineCheckInterval == 0, budget.deadlinePassed() { return result.setInterrupted() }
                    }
                }
                result.setText(UnsafeBufferPointer(rebasing: input[start..<end]))
            }
        }
    }

    /// The characters of a trim set with their first position in the set: one-byte characters in
    /// a table, longer ones in dictionaries by length.
    struct CharacterSet {
        /// Byte → first index of that one-byte character, or -1.
        private var single = [Int](repeating: -1, count: 256)
        /// Byte length (2…8) → (character bytes packed in a UInt64 → first index).
        private var short: [Int: [UInt64: Int]] = [:]
        /// Characters longer than 8 bytes (only in invalid UTF-8).
        private var long: [(bytes: [UInt8], index: Int)] = []
        private var lengths: [Int] = []

        /// nil when the deadline passed while reading the set.
        init?(_ set: UnsafeBufferPointer<UInt8>, budget: BudgetState) {
            var index = 0, position = 0
            while position < set.count {
                var next = position + 1
                if set[position] >= 0xC0 { while next < set.count, set[next] & 0xC0 == 0x80 { next += 1 } }
                let length = next - position
                if length == 1 {
                    if single[Int(set[position])] < 0 { single[Int(set[position])] = index }
                } else if length <= 8 {
                    let key = Self.pack(set, from: position, length: length)
                    if short[length, default: [:]][key] == nil { short[length, default: [:]][key] = index }
                } else {
                    long.append((Array(set[position..<next]), index))
                }
                if length > 1, !lengths.contains(length) { lengths.append(length) }
                index += 1
                position = next
                if index % deadlineCheckInterval == 0, budget.deadlinePassed() { return nil }
            }
        }

        static func pack(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int, length: Int) -> UInt64 {
            var key: UInt64 = 0
            for offset in 0..<length { key = key << 8 | UInt64(bytes[start + offset]) }
            return key
        }

        /// The length of the set's character that `bytes` has at `start` (not past `limit`).
        func match(_ bytes: UnsafeBufferPointer<UInt8>, at start: Int, limit: Int) -> Int? {
            best(singleIndex: single[Int(bytes[start])]) { length in
                guard length <= limit - start else { return nil }
                return index(of: bytes, from: start, length: length)
            }
        }

        /// The length of the set's character that ends at `end` (not before `limit`).
        func matchBackward(_ bytes: UnsafeBufferPointer<UInt8>, endingAt end: Int, limit: Int) -> Int? {
            best(singleIndex: single[Int(bytes[end - 1])]) { length in
                guard length <= end - limit else { return nil }
                return index(of: bytes, from: end - length, length: length)
            }
        }

        private func index(of bytes: UnsafeBufferPointer<UInt8>, from start: Int, length: Int) -> Int? {
            if length <= 8 { return short[length]?[Self.pack(bytes, from: start, length: length)] }
            return long.first { $0.bytes.count == length && $0.bytes.elementsEqual(bytes[start..<start + length]) }?.index
        }

        /// Among the lengths that match, the one whose character comes first in the set.
        private func best(singleIndex: Int, _ indexFor: (Int) -> Int?) -> Int? {
            var chosen: (length: Int, index: Int)? = singleIndex >= 0 ? (1, singleIndex) : nil
            for length in lengths {
                if let index = indexFor(length), index < (chosen?.index ?? .max) { chosen = (length, index) }
            }
            return chosen?.length
        }
    }

    // MARK: like, glob

    /// One element of a LIKE or GLOB pattern.
    enum PatternElement: Equatable {
        case any
        case one
        case literal(UInt32)
        case set(singles: [UInt32], ranges: [ClosedRange<UInt32>], inverted: Bool)
        /// Matches nothing: a trailing escape or an unterminated `[`.
        case never
    }

    /// `like(P, X[, E])` (`X LIKE P ESCAPE E`) and `glob(P, X)`: 1, 0 or NULL.
    static func like(_ arguments: FunctionArguments, _ result: FunctionResult, glob: Bool, budget: BudgetState) {
        // Debian's SQLite is built with SQLITE_LIKE_DOESNT_MATCH_BLOBS: a blob never matches
        // (tested before NULL, as SQLite does).
        if arguments.type(at: 0) == .blob || arguments.type(at: 1) == .blob { return result.setInteger(0) }
        guard arguments.type(at: 0) != .null, arguments.type(at: 1) != .null else { return result.setNull() }
        var escape: UInt32?
        if arguments.count == 3 {
            guard arguments.type(at: 2) != .null else { return result.setNull() }
            let escapeCharacter: UInt32? = arguments.withText(at: 2) { bytes in
                var position = 0
                guard bytes.count > 0 else { return nil }
                let character = readUTF8(bytes, &position)
                return position == bytes.count ? character : nil
            }
            guard let escapeCharacter else { return result.setError("ESCAPE expression must be a single character") }
            escape = escapeCharacter
        }
        arguments.withText(at: 0) { patternBytes in
            guard patternBytes.count <= budget.likePatternLimit else { return result.setError("LIKE or GLOB pattern too complex") }
            let elements = glob ? globElements(untilNul(patternBytes)) : likeElements(untilNul(patternBytes), escape: escape)
            arguments.withText(at: 1) { subject in
                switch match(elements, untilNul(subject), caseInsensitive: !glob, budget: budget) {
                case .matched(let matched): result.setInteger(matched ? 1 : 0)
                case .gaveUp: result.setNull()
                case .interrupted: result.setInterrupted()
                }
            }
        }
    }

    /// SQLite's matcher reads NUL-terminated strings: a NUL ends them.
    static func untilNul(_ bytes: UnsafeBufferPointer<UInt8>) -> UnsafeBufferPointer<UInt8> {
        guard let nul = ByteSearch.firstOffset(of: 0, in: bytes) else { return bytes }
        return UnsafeBufferPointer(rebasing: bytes[..<nul])
    }

    static func likeElements(_ pattern: UnsafeBufferPointer<UInt8>, escape: UInt32?) -> [PatternElement] {
        // An escape that is itself a wildcard turns that wildcard off, as in SQLite.
        let matchAll: UInt32? = escape == 0x25 ? nil : 0x25
        let matchOne: UInt32? = escape == 0x5F ? nil : 0x5F
        var elements: [PatternElement] = []
        var position = 0
        while position < pattern.count {
            let character = readUTF8(pattern, &position)
            if character == escape {
                guard position < pattern.count else { elements.append(.never); break }
                elements.append(.literal(readUTF8(pattern, &position)))
            } else if character == matchAll {
                if elements.last != .any { elements.append(.any) }
            } else if character == matchOne {
                elements.append(.one)
            } else {
                elements.append(.literal(character))
            }
        }
        return elements
    }

    static func globElements(_ pattern: UnsafeBufferPointer<UInt8>) -> [PatternElement] {
        var elements: [PatternElement] = []
        var position = 0
        func next() -> UInt32 { position < pattern.count ? readUTF8(pattern, &position) : 0 }
        while position < pattern.count {
            let character = readUTF8(pattern, &position)
            switch character {
            case 0x2A: if elements.last != .any { elements.append(.any) }
            case 0x3F: elements.append(.one)
            case 0x5B:
                var singles: [UInt32] = [], ranges: [ClosedRange<UInt32>] = []
                var inverted = false
                var current = next()
                if current == 0x5E { inverted = true; current = next() }
                if current == 0x5D { singles.append(0x5D); current = next() }
                var prior: UInt32 = 0
                while current != 0, current != 0x5D {
                    let following = position < pattern.count ? pattern[position] : 0
                    if current == 0x2D, following != 0x5D, following != 0, prior > 0 {
                        current = next()
                        if prior <= current { ranges.append(prior...current) }
                        prior = 0
                    } else {
                        singles.append(current)
                        prior = current
                    }
                    current = next()
                }
                if current == 0 {
                    elements.append(.never)
                    return elements
                }
                elements.append(.set(singles: singles, ranges: ranges, inverted: inverted))
            default:
                elements.append(.literal(character))
            }
        }
        return elements
    }

    /// Wildcard matching that backtracks only to the last `%`/`*` (which is exact for these
    /// patterns) and looks at the deadline every `deadlineCheckInterval` steps; nil when the
    /// deadline passed.
    enum MatchOutcome: Equatable {
        case matched(Bool)
        /// Past the budget's `patternStepCap` (stage 1 of a private plan): the call answers NULL.
        case gaveUp
        /// The deadline passed or the query was cancelled.
        case interrupted
    }

    static func match(_ elements: [PatternElement], _ subject: UnsafeBufferPointer<UInt8>, caseInsensitive: Bool, budget: BudgetState) -> MatchOutcome {
        var element = 0, position = 0
        var star = -1, starPosition = 0
        var steps = 0
        let cap = budget.patternStepCap
        while position < subject.count {
            steps &+= 1
            if steps > cap { return .gaveUp }
            if steps % deadlineCheckInterval == 0, budget.deadlinePassed() { return .interrupted }
            if element < elements.count {
                if elements[element] == .any {
                    star = element
                    element += 1
                    starPosition = position
                    continue
                }
                var next = position
                let character = readUTF8(subject, &next)
                if matches(elements[element], character, caseInsensitive: caseInsensitive) {
                    element += 1
                    position = next
                    continue
                }
            }
            guard star >= 0 else { return .matched(false) }
            element = star + 1
            _ = readUTF8(subject, &starPosition)
            position = starPosition
        }
        while element < elements.count, elements[element] == .any { element += 1 }
        return .matched(element == elements.count)
    }

    @inline(__always)
    static func matches(_ element: PatternElement, _ character: UInt32, caseInsensitive: Bool) -> Bool {
        switch element {
        case .any, .one: return true
        case .never: return false
        case .literal(let expected):
            if expected == character { return true }
            return caseInsensitive && expected < 0x80 && character < 0x80 && asciiLower(expected) == asciiLower(character)
        case .set(let singles, let ranges, let inverted):
            let seen = singles.contains(character) || ranges.contains { $0.contains(character) }
            return seen != inverted
        }
    }

    @inline(__always)
    static func asciiLower(_ character: UInt32) -> UInt32 {
        (0x41...0x5A).contains(character) ? character + 0x20 : character
    }

    /// SQLite's lenient UTF-8 reader (`sqlite3Utf8Read`): a lead byte takes every continuation
    /// byte after it; overlong forms, surrogates and U+FFFE/FFFF read as U+FFFD.
    @inline(__always)
    static func readUTF8(_ bytes: UnsafeBufferPointer<UInt8>, _ position: inout Int) -> UInt32 {
        var character = UInt32(bytes[position])
        position += 1
        guard character >= 0xC0 else { return character }
        switch character {
        case 0xC0...0xDF: character -= 0xC0
        case 0xE0...0xEF: character -= 0xE0
        case 0xF0...0xF7: character -= 0xF0
        case 0xF8...0xFB: character -= 0xF8
        case 0xFD: character = 1
        default: character = 0
        }
        while position < bytes.count, bytes[position] & 0xC0 == 0x80 {
            character = (character &<< 6) &+ UInt32(bytes[position] & 0x3F)
            position += 1
        }
        if character < 0x80 || character & 0xFFFF_F800 == 0xD800 || character & 0xFFFF_FFFE == 0xFFFE { character = 0xFFFD }
        return character
    }
}
