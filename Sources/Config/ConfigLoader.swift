import Glibc
import Models
import TOMLKit

/// Parses and validates the TOML configuration file. Unknown keys are errors, so a typo never
/// silently falls back to a default.
public enum ConfigLoader {
    public static func parse(_ text: String, source: String = "config") throws -> CocoonConfig {
        let table = try parseTOML(text, source: source)
        var config = CocoonConfig()
        let topKeys: Set = [
            "state_root", "run_dir", "socket", "log_level", "default_handler", "handlers", "registry", "containers",
            "streaming", "socket_group", "vm_uid_base", "cni", "cgroups",
        ]
        try rejectUnknown(table, allowed: topKeys, at: source)
        try applyTopLevel(table, source, to: &config)
        if let handlersTable = try section(table, "handlers", source) {
            config.handlers = [:]
            for name in handlersTable.keys {
                guard let h = handlersTable[name]?.table else {
                    throw ConfigError("\(source): handlers.\(name) must be a table")
                }
                config.handlers[name] = try handler(h, at: "\(source): handlers.\(name)")
            }
        }
        if let t = try section(table, "registry", source) {
            config.registry = try registry(t, at: "\(source): registry")
        }
        if let t = try section(table, "containers", source) {
            try applyContainers(t, at: "\(source): containers", to: &config)
        }
        if let t = try section(table, "cgroups", source) {
            try applyCgroups(t, at: "\(source): cgroups", to: &config)
        }
        if let t = try section(table, "cni", source) {
            try applyCNI(t, at: "\(source): cni", to: &config)
        }
        if let t = try section(table, "streaming", source) {
            try applyStreaming(t, at: "\(source): streaming", to: &config)
        }
        config.defaultHandler =
            try string(table, "default_handler", source)
            ?? (config.handlers[CocoonConfig.defaultHandlerName] != nil
                ? CocoonConfig.defaultHandlerName : config.handlers.keys.sorted().first ?? "")
        guard !config.handlers.isEmpty else { throw ConfigError("\(source): at least one [handlers.NAME] is needed") }
        guard config.handlers[config.defaultHandler] != nil else {
            throw ConfigError("\(source): default_handler \"\(config.defaultHandler)\" is not a configured handler")
        }
        return config
    }

    /// Reads the file at `path`; a missing default file means the built-in defaults.
    public static func load(path: String, required: Bool) throws -> CocoonConfig {
        guard let text = try readTextFile(path) else {
            if required { throw ConfigError("config file \(path) does not exist") }
            return CocoonConfig()
        }
        return try parse(text, source: path)
    }

    /// The document's root table; syntax errors name the line.
    private static func parseTOML(_ text: String, source: String) throws -> TOMLTable {
        do {
            return try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigError("\(source):\(error.source.begin.line): invalid TOML: \(error.description)")
        } catch {
            throw ConfigError("\(source): invalid TOML: \(error)")
        }
    }

    /// The table under `key`, nil when absent; anything but a table there is an error.
    private static func section(_ table: TOMLTable, _ key: String, _ source: String) throws -> TOMLTable? {
        guard let value = table[key] else { return nil }
        guard let t = value.table else { throw ConfigError("\(source): \(key) must be a table") }
        return t
    }

    /// The top-level scalar keys: paths, socket group, VM uid base and log level.
    private static func applyTopLevel(_ table: TOMLTable, _ source: String, to config: inout CocoonConfig) throws {
        config.stateRoot = try path(table, "state_root", source) ?? config.stateRoot
        config.runDir = try path(table, "run_dir", source) ?? config.runDir
        config.socket = try path(table, "socket", source) ?? (config.runDir + "/cocoon.sock")
        config.socketGroup = try string(table, "socket_group", source) ?? ""
        if let base = try int(table, "vm_uid_base", source) {
            guard base >= 1000, base <= Int(UInt32.max - CocoonConfig.vmUIDCount) else {
                throw ConfigError(
                    "\(source): vm_uid_base \(base) must be 1000...\(UInt32.max - CocoonConfig.vmUIDCount) "
                        + "(each pod VM runs as vm_uid_base + a slot below \(CocoonConfig.vmUIDCount))")
            }
            config.vmUIDBase = UInt32(base)
        }
        if let level = try string(table, "log_level", source) {
            guard let parsed = LogLevel(rawValue: level) else {
                throw ConfigError(
                    "\(source): log_level \"\(level)\" is not one of \(LogLevel.allCases.map(\.rawValue))")
            }
            config.logLevel = parsed
        }
    }

    /// The `[containers]` table.
    private static func applyContainers(_ t: TOMLTable, at: String, to config: inout CocoonConfig) throws {
        try rejectUnknown(t, allowed: ["pids_limit"], at: at)
        if let limit = try int(t, "pids_limit", at) {
            guard limit >= 0 else {
                throw ConfigError("\(at): pids_limit \(limit) must be 0 (unlimited) or more")
            }
            config.containers.pidsLimit = Int64(limit)
        }
    }

    /// The `[cgroups]` table.
    private static func applyCgroups(_ t: TOMLTable, at: String, to config: inout CocoonConfig) throws {
        try rejectUnknown(t, allowed: ["driver"], at: at)
        if let name = try string(t, "driver", at) {
            guard let driver = CgroupDriver(rawValue: name) else {
                let known = CgroupDriver.allCases.map(\.rawValue).joined(separator: ", ")
                throw ConfigError("\(at): driver \"\(name)\" is not one of \(known)")
            }
            config.cgroupDriver = driver
        }
    }

    /// The `[cni]` table.
    private static func applyCNI(_ t: TOMLTable, at: String, to config: inout CocoonConfig) throws {
        try rejectUnknown(t, allowed: ["conf_dir", "bin_dirs", "plugin_timeout"], at: at)
        config.cni.confDir = try path(t, "conf_dir", at) ?? config.cni.confDir
        if let dirs = t["bin_dirs"] {
            guard let array = dirs.array, !array.isEmpty else {
                throw ConfigError("\(at): bin_dirs must be a non-empty array of absolute paths")
            }
            config.cni.binDirs = try array.map { value in
                guard let dir = value.string, dir.hasPrefix("/") else {
                    throw ConfigError("\(at): bin_dirs must be a non-empty array of absolute paths")
                }
                return dir
            }
        }
        if let timeout = try int(t, "plugin_timeout", at) {
            guard (1...600).contains(timeout) else {
                throw ConfigError("\(at): plugin_timeout \(timeout) must be 1...600 seconds")
            }
            config.cni.pluginTimeoutSeconds = timeout
        }
    }

    /// The `[streaming]` table.
    private static func applyStreaming(_ t: TOMLTable, at: String, to config: inout CocoonConfig) throws {
        try rejectUnknown(
            t,
            allowed: [
                "address", "port", "stream_creation_timeout", "stream_idle_timeout", "tls_cert_file",
                "tls_key_file",
                "url_ttl",
            ], at: at)
        config.streaming.address = try string(t, "address", at) ?? config.streaming.address
        if let port = try int(t, "port", at) {
            guard (0...65535).contains(port) else { throw ConfigError("\(at): port \(port) is not 0-65535") }
            config.streaming.port = port
        }
        if let seconds = try int(t, "stream_creation_timeout", at) {
            guard seconds > 0 else { throw ConfigError("\(at): stream_creation_timeout must be positive") }
            config.streaming.streamCreationTimeoutSeconds = seconds
        }
        if let seconds = try int(t, "stream_idle_timeout", at) {
            guard seconds > 0 else { throw ConfigError("\(at): stream_idle_timeout must be positive") }
            config.streaming.streamIdleTimeoutSeconds = seconds
        }
        if let seconds = try int(t, "url_ttl", at) {
            guard seconds > 0 else { throw ConfigError("\(at): url_ttl must be positive") }
            config.streaming.urlTTLSeconds = seconds
        }
        config.streaming.tlsCertFile = try string(t, "tls_cert_file", at) ?? ""
        config.streaming.tlsKeyFile = try string(t, "tls_key_file", at) ?? ""
        guard config.streaming.tlsCertFile.isEmpty == config.streaming.tlsKeyFile.isEmpty else {
            throw ConfigError("\(at): tls_cert_file and tls_key_file go together")
        }
    }

    /// One `[handlers.NAME]` table.
    private static func handler(_ t: TOMLTable, at where_: String) throws -> RuntimeHandler {
        try rejectUnknown(
            t,
            allowed: [
                "backend", "kernel", "initrd", "agent_image", "vcpus", "memory_mib", "accel", "kernel_args",
                "enable_annotations", "max_vcpus", "max_memory_mib", "shared_fs", "shared_fs_cache", "start",
                "pool_size", "trusted_guests",
            ],
            at: where_)
        guard let backendName = try string(t, "backend", where_) else {
            throw ConfigError("\(where_): backend is required (qemu, libvirt or native)")
        }
        guard let backend = Backend(rawValue: backendName) else {
            throw ConfigError("\(where_): backend \"\(backendName)\" is not one of qemu, libvirt, native")
        }
        if backend == .native {
            for key in t.keys where key != "backend" {
                throw ConfigError(
                    "\(where_): \(key) does not apply to backend = \"native\" (its pods run on the host, in no VM)")
            }
            return RuntimeHandler(backend: .native)
        }
        var h = RuntimeHandler(backend: backend)
        h.kernel = try path(t, "kernel", where_) ?? h.kernel
        h.initrd = try path(t, "initrd", where_) ?? h.initrd
        h.agentImage = try path(t, "agent_image", where_) ?? RuntimeHandler.agentImage(besideInitrd: h.initrd)
        try applySizing(t, where_, to: &h)
        h.accel = try choice(t, "accel", where_) ?? h.accel
        h.kernelArgs = try string(t, "kernel_args", where_) ?? ""
        try applyStart(t, where_, to: &h)
        if let n = try int(t, "pool_size", where_) {
            guard RuntimeHandler.poolSizeRange.contains(n) else {
                throw ConfigError("\(where_): pool_size \(n) is outside \(RuntimeHandler.poolSizeRange)")
            }
            h.poolSize = n
        }
        try applyScaling(t, where_, to: &h)
        h.trustedGuests = try bool(t, "trusted_guests", where_) ?? false
        if backend == .libvirt, !h.trustedGuests {
            throw ConfigError(
                "\(where_): backend = \"libvirt\" cannot give the pod VM the whole jail of the qemu backend: "
                    + RuntimeHandler.libvirtMissingJail.joined(separator: "; ")
                    + ". Set trusted_guests = true on this handler to run its pods anyway (for guests you trust), "
                    + "or use backend = \"qemu\"")
        }
        return h
    }

    /// A handler's default size: `vcpus` and `memory_mib`.
    private static func applySizing(_ t: TOMLTable, _ where_: String, to h: inout RuntimeHandler) throws {
        if let v = try int(t, "vcpus", where_) {
            guard RuntimeHandler.vcpuRange.contains(v) else {
                throw ConfigError("\(where_): vcpus \(v) is outside \(RuntimeHandler.vcpuRange)")
            }
            h.vcpus = v
        }
        if let m = try int(t, "memory_mib", where_) {
            guard RuntimeHandler.memoryRangeMiB.contains(m) else {
                throw ConfigError("\(where_): memory_mib \(m) is outside \(RuntimeHandler.memoryRangeMiB)")
            }
            h.memoryMiB = m
        }
    }

    /// A handler's `start` mode and `shared_fs` settings (a template start needs qemu and no virtiofs).
    private static func applyStart(_ t: TOMLTable, _ where_: String, to h: inout RuntimeHandler) throws {
        h.start = try choice(t, "start", where_) ?? h.start
        let sharedFS: SharedFS? = try choice(t, "shared_fs", where_)
        if h.start == .template {
            guard h.backend == .qemu else {
                throw ConfigError("\(where_): start = \"template\" needs backend = \"qemu\"")
            }
            guard sharedFS != .virtioFS else {
                throw ConfigError(
                    "\(where_): start = \"template\" needs shared_fs = \"none\" (a clone's RAM is private; "
                        + "virtiofsd must map guest RAM shared)")
            }
            h.sharedFS = .none
        }
        h.sharedFS = sharedFS ?? h.sharedFS
        h.sharedFSCache = try choice(t, "shared_fs_cache", where_) ?? h.sharedFSCache
    }

    /// What pods may ask for beyond the default size: `enable_annotations`, `max_vcpus`, `max_memory_mib`.
    private static func applyScaling(_ t: TOMLTable, _ where_: String, to h: inout RuntimeHandler) throws {
        if let names = try strings(t, "enable_annotations", where_) {
            for name in names where !RuntimeHandler.sizingAnnotations.contains(name) {
                throw ConfigError(
                    "\(where_): enable_annotations: \"\(name)\" is not one of \(RuntimeHandler.sizingAnnotations)")
            }
            h.enableAnnotations = names
        }
        if let v = try int(t, "max_vcpus", where_) {
            guard RuntimeHandler.vcpuRange.contains(v), v >= h.vcpus else {
                throw ConfigError("\(where_): max_vcpus \(v) must be within \(RuntimeHandler.vcpuRange) and >= vcpus")
            }
            h.maxVcpus = v
        }
        if let m = try int(t, "max_memory_mib", where_) {
            guard RuntimeHandler.memoryRangeMiB.contains(m), m >= h.memoryMiB else {
                throw ConfigError(
                    "\(where_): max_memory_mib \(m) must be within \(RuntimeHandler.memoryRangeMiB) and >= memory_mib")
            }
            h.maxMemoryMiB = m
        }
        h.maxVcpus = max(h.maxVcpus, h.vcpus)
        h.maxMemoryMiB = max(h.maxMemoryMiB, h.memoryMiB)
    }

    private static func registry(_ t: TOMLTable, at where_: String) throws -> RegistrySettings {
        try rejectUnknown(t, allowed: ["insecure", "mirrors", "max_concurrent_downloads"], at: where_)
        var r = RegistrySettings()
        r.insecure = try strings(t, "insecure", where_) ?? []
        if let m = t["mirrors"] {
            guard let mt = m.table else { throw ConfigError("\(where_): mirrors must be a table of host = [urls]") }
            for host in mt.keys {
                let urls = try strings(mt, host, "\(where_).mirrors") ?? []
                for u in urls where !(u.hasPrefix("http://") || u.hasPrefix("https://")) {
                    throw ConfigError("\(where_).mirrors.\(host): \"\(u)\" must start with http:// or https://")
                }
                r.mirrors[host] = urls
            }
        }
        if let n = try int(t, "max_concurrent_downloads", where_) {
            guard RegistrySettings.concurrencyRange.contains(n) else {
                throw ConfigError(
                    "\(where_): max_concurrent_downloads \(n) is outside \(RegistrySettings.concurrencyRange)")
            }
            r.maxConcurrentDownloads = n
        }
        return r
    }

    private static func strings(_ t: TOMLTable, _ key: String, _ where_: String) throws -> [String]? {
        guard let v = t[key] else { return nil }
        guard let a = v.array else { throw ConfigError("\(where_): \(key) must be an array of strings") }
        return try a.map { e in
            guard let s = e.string else { throw ConfigError("\(where_): \(key) must be an array of strings") }
            return s
        }
    }

    private static func rejectUnknown(_ t: TOMLTable, allowed: Set<String>, at where_: String) throws {
        for key in t.keys where !allowed.contains(key) {
            throw ConfigError("\(where_): unknown key \"\(key)\" (known: \(allowed.sorted().joined(separator: ", ")))")
        }
    }

    private static func string(_ t: TOMLTable, _ key: String, _ where_: String) throws -> String? {
        guard let v = t[key] else { return nil }
        guard let s = v.string else { throw ConfigError("\(where_): \(key) must be a string") }
        return s
    }

    /// One of an enumeration's raw values.
    private static func choice<T: RawRepresentable & CaseIterable>(_ t: TOMLTable, _ key: String, _ where_: String)
        throws -> T? where T.RawValue == String
    {
        guard let s = try string(t, key, where_) else { return nil }
        guard let value = T(rawValue: s) else {
            let known = T.allCases.map(\.rawValue).joined(separator: ", ")
            throw ConfigError("\(where_): \(key) \"\(s)\" is not one of \(known)")
        }
        return value
    }

    private static func path(_ t: TOMLTable, _ key: String, _ where_: String) throws -> String? {
        guard let s = try string(t, key, where_) else { return nil }
        guard s.hasPrefix("/") else { throw ConfigError("\(where_): \(key) must be an absolute path, got \"\(s)\"") }
        return s
    }

    private static func bool(_ t: TOMLTable, _ key: String, _ where_: String) throws -> Bool? {
        guard let v = t[key] else { return nil }
        guard let b = v.bool else { throw ConfigError("\(where_): \(key) must be true or false") }
        return b
    }

    private static func int(_ t: TOMLTable, _ key: String, _ where_: String) throws -> Int? {
        guard let v = t[key] else { return nil }
        guard let i = v.int else { throw ConfigError("\(where_): \(key) must be an integer") }
        return i
    }
}

/// Reads a whole text file, or nil when it does not exist.
func readTextFile(_ path: String) throws -> String? {
    guard let f = fopen(path, "r") else {
        if errno == ENOENT { return nil }
        throw ConfigError("cannot read \(path): errno \(errno)")
    }
    defer { fclose(f) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&chunk, 1, chunk.count, f)
        if n <= 0 { break }
        bytes.append(contentsOf: chunk[0..<n])
        if bytes.count > 1 << 20 { throw ConfigError("\(path) is larger than 1 MiB") }
    }
    return String(decoding: bytes, as: UTF8.self)
}
