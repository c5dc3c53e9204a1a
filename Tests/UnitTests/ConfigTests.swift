import Config
import Models
import Testing

@Suite struct ConfigTests {
    @Test func defaultsWithoutFile() throws {
        let config = try ConfigLoader.load(path: "/nonexistent/cocoon.toml", required: false)
        #expect(config.stateRoot == "/var/lib/cocoon")
        #expect(config.socket == "/run/cocoon/cocoon.sock")
        #expect(config.handlers["cocoon"]?.backend == .qemu)
        #expect(config.handler(named: "")?.name == "cocoon")
    }

    @Test func containerSettings() throws {
        #expect(try ConfigLoader.parse("[handlers.a]\nbackend = \"qemu\"\n").containers.pidsLimit == 0)
        #expect(
            try ConfigLoader.parse("[handlers.a]\nbackend = \"qemu\"\n[containers]\npids_limit = 64\n").containers
                .pidsLimit == 64)
        #expect(throws: ConfigError.self) {
            try ConfigLoader.parse("[handlers.a]\nbackend = \"qemu\"\n[containers]\npids_limit = -1\n")
        }
        #expect(throws: ConfigError.self) {
            try ConfigLoader.parse("[handlers.a]\nbackend = \"qemu\"\n[containers]\npid_limit = 5\n")
        }
    }

    @Test func streamingSettings() throws {
        let base = "[handlers.a]\nbackend = \"qemu\"\n"
        let defaults = try ConfigLoader.parse(base).streaming
        #expect(defaults.address == "127.0.0.1" && defaults.port == 0)
        #expect(defaults.streamCreationTimeoutSeconds == 30 && defaults.streamIdleTimeoutSeconds == 14400)
        let set = try ConfigLoader.parse(
            base + "[streaming]\naddress = \"0.0.0.0\"\nport = 10010\nstream_idle_timeout = 60\n"
        ).streaming
        #expect(set.address == "0.0.0.0" && set.port == 10010 && set.streamIdleTimeoutSeconds == 60)
        #expect(throws: ConfigError.self) { try ConfigLoader.parse(base + "[streaming]\nport = 70000\n") }
        #expect(throws: ConfigError.self) { try ConfigLoader.parse(base + "[streaming]\nidle = 5\n") }
        #expect(defaults.urlTTLSeconds == 60 && defaults.tlsCertFile.isEmpty)
        let tls = try ConfigLoader.parse(
            base + "[streaming]\nurl_ttl = 5\ntls_cert_file = \"/c.pem\"\ntls_key_file = \"/k.pem\"\n"
        ).streaming
        #expect(tls.urlTTLSeconds == 5 && tls.tlsCertFile == "/c.pem" && tls.tlsKeyFile == "/k.pem")
        // A certificate without its key (or the other way round) is a mistake, not plain HTTP.
        #expect(throws: ConfigError.self) { try ConfigLoader.parse(base + "[streaming]\ntls_cert_file = \"/c\"\n") }
    }

    @Test func cniSettings() throws {
        let base = "[handlers.a]\nbackend = \"qemu\"\n"
        let defaults = try ConfigLoader.parse(base).cni
        #expect(defaults.confDir == "/etc/cni/net.d" && defaults.binDirs == ["/opt/cni/bin", "/usr/lib/cni"])
        let set = try ConfigLoader.parse(
            base + "[cni]\nconf_dir = \"/x/net.d\"\nbin_dirs = [\"/x/bin\"]\nplugin_timeout = 5\n"
        ).cni
        #expect(set.confDir == "/x/net.d" && set.binDirs == ["/x/bin"] && set.pluginTimeoutSeconds == 5)
        for bad in [
            "[cni]\nconf_dir = \"net.d\"\n", "[cni]\nbin_dirs = []\n", "[cni]\nbin_dirs = [\"bin\"]\n",
            "[cni]\nplugin_timeout = 0\n", "[cni]\nbin_dir = \"/x\"\n",
        ] {
            #expect(throws: ConfigError.self) { try ConfigLoader.parse(base + bad) }
        }
    }

    @Test func missingRequiredFileIsAnError() {
        #expect(throws: ConfigError.self) { try ConfigLoader.load(path: "/nonexistent/cocoon.toml", required: true) }
    }

    @Test func parsesHandlers() throws {
        let config = try ConfigLoader.parse(
            """
            state_root = "/srv/cocoon"
            run_dir = "/run/c"
            log_level = "debug"
            default_handler = "fast"
            [handlers.fast]
            backend = "qemu"
            kernel = "/k"
            initrd = "/i"
            vcpus = 2
            memory_mib = 512
            accel = "tcg"
            [handlers.lv]
            backend = "libvirt"
            trusted_guests = true
            """)
        #expect(config.stateRoot == "/srv/cocoon")
        #expect(config.socket == "/run/c/cocoon.sock")
        #expect(config.logLevel == .debug)
        #expect(config.handlers.count == 2)
        let fast = try #require(config.handlers["fast"])
        #expect(fast.vcpus == 2 && fast.memoryMiB == 512 && fast.accel == .tcg && fast.kernel == "/k")
        #expect(fast.agentImage == "/agent.img")
        #expect(config.handlers["lv"]?.agentImage == "/var/lib/cocoon/guest/agent.img")
        #expect(config.handlers["lv"]?.backend == .libvirt)
        #expect(config.handler(named: "")?.name == "fast")
        #expect(config.handler(named: "nope") == nil)
    }

    /// libvirt cannot put QEMU in the pod's network or PID namespace: such a handler loads only when
    /// the admin says its guests are trusted, and the refusal says what is missing.
    @Test func aLibvirtHandlerNeedsTrustedGuests() throws {
        let error = #expect(throws: ConfigError.self) {
            try ConfigLoader.parse("[handlers.lv]\nbackend = \"libvirt\"\n")
        }
        #expect(error?.description.contains("network namespace") == true)
        #expect(error?.description.contains("PID namespace") == true)
        #expect(error?.description.contains("trusted_guests = true") == true)
        #expect(throws: ConfigError.self) {
            try ConfigLoader.parse("[handlers.lv]\nbackend = \"libvirt\"\ntrusted_guests = \"yes\"\n")
        }
        #expect(try ConfigLoader.parse("[handlers.q]\nbackend = \"qemu\"\n").handlers["q"]?.trustedGuests == false)
    }

    @Test func parsesRegistrySettings() throws {
        let config = try ConfigLoader.parse(
            """
            [registry]
            insecure = ["reg.lan:5000"]
            max_concurrent_downloads = 5
            [registry.mirrors]
            "docker.io" = ["https://mirror.example", "http://127.0.0.1:5000"]
            """)
        #expect(config.registry.insecure == ["reg.lan:5000"])
        #expect(config.registry.maxConcurrentDownloads == 5)
        #expect(config.registry.mirrors["docker.io"] == ["https://mirror.example", "http://127.0.0.1:5000"])
        #expect(CocoonConfig().registry.maxConcurrentDownloads == 3)
    }

    @Test func aNativeHandlerCanBeTheDefault() throws {
        let config = try ConfigLoader.parse(
            """
            default_handler = "runc"
            [handlers.runc]
            backend = "native"
            [handlers.kata]
            backend = "qemu"
            """)
        #expect(config.handler(named: "")?.0 == "runc")
        #expect(config.handler(named: "")?.1.backend == .native)
        #expect(config.handler(named: "kata")?.1.backend == .qemu)
        #expect(!Backend.native.isVM && Backend.qemu.isVM && Backend.libvirt.isVM)
    }

    @Test(arguments: [
        ("sokcet = \"/x\"", "unknown key \"sokcet\""),
        ("state_root = \"relative\"", "absolute path"),
        ("log_level = \"loud\"", "log_level"),
        ("[handlers.a]\nbackend = \"xen\"", "backend \"xen\""),
        ("[handlers.a]\nbackend = \"qemu\"\nmemory_mib = 99999999", "memory_mib"),
        ("[handlers.a]\nbackend = \"qemu\"\nvcpus = 0", "vcpus"),
        ("[handlers.a]\nkernel = \"/k\"", "backend is required"),
        ("[handlers.a]\nbackend = \"native\"\nkernel = \"/k\"", "kernel does not apply to backend = \"native\""),
        ("default_handler = \"b\"\n[handlers.a]\nbackend = \"qemu\"", "default_handler"),
        ("state_root = ", "invalid TOML"),
        ("[registry]\nmax_concurrent_downloads = 0", "max_concurrent_downloads"),
        ("[registry.mirrors]\n\"docker.io\" = [\"ftp://x\"]", "http:// or https://"),
        ("[registry]\ninsecure = \"x\"", "array of strings"),
    ])
    func rejectsBadConfig(text: String, expected: String) {
        do {
            _ = try ConfigLoader.parse(text, source: "test.toml")
            Issue.record("accepted bad config: \(text)")
        } catch {
            #expect("\(error)".contains(expected), "\(error)")
        }
    }
}
