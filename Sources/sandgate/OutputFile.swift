import Foundation

/// `--out PATH` for every command that writes a file: only a regular file (or nothing) is
/// replaced, the bytes go to `PATH.partial` first and are renamed into place once written and
/// flushed, and a write error (a full disk) is a `Failure`, never a trap or a half file.
struct OutputFile {
    let destination: String
    let temporary: String
    private let handle: FileHandle

    /// Refuses a destination that exists and is not a regular file (a device, a FIFO, a
    /// directory, a symbolic link): renaming over it would replace it, and as root `/dev/full`
    /// would become a regular file.
    static func checkDestination(_ path: String) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return }
            throw Failure("cannot write \(path): \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw Failure("cannot write \(path): it exists and is not a regular file (refusing to replace it)")
        }
    }

    /// Opens `destination.partial` for writing (created or truncated, never through a link).
    init(destination: String) throws {
        try Self.checkDestination(destination)
        let temporary = destination + ".partial"
        try Self.checkDestination(temporary)
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw Failure("cannot write \(destination): \(String(cString: strerror(errno)))") }
        self.destination = destination
        self.temporary = temporary
        self.handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
    }

    /// Appends `data`; on an error the partial file is removed.
    func write(_ data: Data) throws {
        do {
            try handle.write(contentsOf: data)
        } catch {
            discard()
            throw Failure("cannot write \(destination): \(Self.reason(error))")
        }
    }

    /// Flushes the file to disk and renames it into place (the destination is checked again).
    func commit() throws {
        do {
            try handle.synchronize()
            try handle.close()
        } catch {
            discard()
            throw Failure("cannot write \(destination): \(Self.reason(error))")
        }
        do {
            try Self.checkDestination(destination)
        } catch {
            discard()
            throw error
        }
        guard rename(temporary, destination) == 0 else {
            let reason = String(cString: strerror(errno))
            discard()
            throw Failure("cannot write \(destination): \(reason)")
        }
    }

    /// Removes the partial file (after a failure).
    func discard() {
        try? handle.close()
        unlink(temporary)
    }

    /// Writes all of `text` to `path` (`write`, then `commit`).
    static func write(_ text: String, to path: String) throws {
        let file = try OutputFile(destination: path)
        try file.write(Data(text.utf8))
        try file.commit()
    }

    private static func reason(_ error: any Error) -> String {
        if let posix = error as? POSIXError { return String(cString: strerror(posix.code.rawValue)) }
        let ns = error as NSError
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        return ns.localizedDescription
    }
}

/// Writes to standard output; a write error (a closed pipe, a full disk) is a `Failure`.
func writeOut(_ text: String) throws {
    do {
        try FileHandle.standardOutput.write(contentsOf: Data(text.utf8))
    } catch {
        throw Failure("cannot write to standard output: \(error.localizedDescription)")
    }
}

/// Writes to standard error; a failure there has nowhere to be reported (the exit status says it).
func writeError(_ text: String) {
    try? FileHandle.standardError.write(contentsOf: Data(text.utf8))
}
