import CRIAPI
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Testing

/// Exec, Attach and PortForward through the streaming server and a real pod VM, driven by crictl
/// (client-go's SPDY and WebSocket clients) and by raw HTTP for what a client should never send.
@Suite(
    .serialized,
    .enabled(
        if: DaemonHarness.enabled && TestImages.available, "needs the guest image and the test registry (scripts/test)")
)
struct StreamingTests {
    typealias Runtime = Runtime_V1_RuntimeService.Client<HTTP2ClientTransport.Posix>
    static let busybox = "127.0.0.1:5000/busybox:latest"

    func container(_ name: String, _ command: [String], pod: Runtime_V1_RunPodSandboxRequest, podID: String)
        -> Runtime_V1_CreateContainerRequest
    {
        containerRequest(name, command, pod: pod, podID: podID, image: Self.busybox)
    }

    func run(_ rt: Runtime, _ request: Runtime_V1_CreateContainerRequest) async throws -> String {
        try await runContainer(rt, request)
    }

    /// The URL of a streaming exec with stdout only.
    func execURL(_ rt: Runtime, _ id: String, _ cmd: [String]) async throws -> String {
        try await rt.exec(
            .with {
                $0.containerID = id
                $0.cmd = cmd
                $0.stdout = true
            }
        ).url
    }

    func execSync(_ rt: Runtime, _ id: String, _ cmd: [String]) async throws -> String {
        let r = try await rt.execSync(
            .with {
                $0.containerID = id
                $0.cmd = cmd
            })
        return String(decoding: r.stdout, as: UTF8.self)
    }

    /// A daemon, busybox, one pod with a `sleep` container; crictl when it is there.
    func withPod(
        extraConfig: String = "",
        _ body: (DaemonHarness, Runtime, Runtime_V1_RunPodSandboxRequest, String, String, Crictl?) async throws -> Void
    ) async throws {
        try await withDaemon(extraConfig: extraConfig) { daemon in
            _ = try await daemon.withImages { img in try await pull(img, Self.busybox) }
            try await daemon.withRuntime { rt in
                let pod = podConfig("stream-\(UInt32.random(in: 0...UInt32.max))")
                try await withTestPod(rt, pod) { podID in
                    let id = try await run(rt, container("main", ["sleep", "100000"], pod: pod, podID: podID))
                    let crictl = Crictl.path.map { Crictl(binary: $0, socket: daemon.socket) }
                    if crictl == nil {
                        print("StreamingTests: crictl not found (../shared/tools/crictl or $CRICTL); skipping its part")
                    }
                    try await body(daemon, rt, pod, podID, id, crictl)
                }
            }
        }
    }

    @Test func execOverSPDYAndWebSocketWithStdinAndTTY() async throws {
        try await withPod { daemon, rt, pod, podID, id, crictl in
            // The CRI call checks before any URL is handed out.
            let bad = await #expect(throws: RPCError.self) {
                _ = try await rt.exec(
                    .with {
                        $0.containerID = "nosuch"
                        $0.cmd = ["true"]
                        $0.stdout = true
                    })
            }
            #expect(bad?.code == .notFound)
            let ttyStderr = await #expect(throws: RPCError.self) {
                _ = try await rt.exec(
                    .with {
                        $0.containerID = id
                        $0.cmd = ["true"]
                        $0.tty = true
                        $0.stdin = true
                        $0.stderr = true
                    })
            }
            #expect(ttyStderr?.code == .invalidArgument)
            let exited = try await run(rt, container("done", ["true"], pod: pod, podID: podID))
            for _ in 0..<600 {
                if try await rt.containerStatus(.with { $0.containerID = exited }).status.state == .containerExited {
                    break
                }
                // sleep: a poll pause; the loop checks the condition
                try await Task.sleep(for: .milliseconds(100))
            }
            let stopped = await #expect(throws: RPCError.self) {
                _ = try await rt.exec(
                    .with {
                        $0.containerID = exited
                        $0.cmd = ["true"]
                        $0.stdout = true
                    })
            }
            #expect(stopped?.code == .failedPrecondition)
            let url = try await execURL(rt, id, ["true"])
            #expect(url.hasPrefix("http://127.0.0.1:") && url.contains("/exec/"))

            let input = NSTemporaryDirectory() + "cocoon-stdin-\(UUID().uuidString.prefix(8))"
            FileManager.default.createFile(atPath: input, contents: try randomBytes(10 << 20))
            defer { try? FileManager.default.removeItem(atPath: input) }  // test scratch
            // cocoonctl's own clients (SPDY v4 by default, WebSocket v5): the same cases.
            let ctl = CocoonCtl(socket: daemon.socket)
            for transport in ["spdy", "websocket"] {
                let via = ["--transport", transport]
                let ownSplit = try await runCommand(
                    ctl.argv("exec", via + [id, "sh", "-c", "echo out; echo err >&2; exit 7"]))
                #expect(
                    ownSplit.out == "out\n" && ownSplit.stderr == "err\n" && ownSplit.code == 7,
                    "\(transport): \(ownSplit)")
                let ownEcho = try await runCommand(ctl.argv("exec", via + ["-i", id, "cat"]), stdinFile: input)
                #expect(ownEcho.code == 0, "\(transport): \(ownEcho.stderr)")
                #expect(ownEcho.stdout == FileManager.default.contents(atPath: input), "\(transport): 10 MiB differ")
                let ownTTY = try await runCommand([
                    "/usr/bin/script", "-qec",
                    "stty cols 99 rows 33; "
                        + ctl.argv("exec", via + ["-it", id, "sh", "-c", "stty size; tty"]).map(shellQuote)
                        .joined(separator: " "),
                    "/dev/null",
                ])
                #expect(ownTTY.out.contains("/dev/pts/") && ownTTY.out.contains("33 99"), "\(transport): \(ownTTY.out)")
            }

            if let crictl {
                for transport in ["spdy", "websocket"] {
                    // Both streams, separately, and the exit code.
                    let split = try await runCommand(
                        crictl.prefix + ["exec", "-r", transport, id, "sh", "-c", "echo out; echo err >&2; exit 7"])
                    #expect(split.out == "out\n", "\(transport)")
                    #expect(split.stderr.contains("err\n"), "\(transport)")
                    #expect(split.stderr.contains("exit code 7"), "\(transport): \(split.stderr)")
                    #expect(split.code != 0)
                    // 10 MiB through cat, byte-exact.
                    let echoed = try await runCommand(
                        crictl.prefix + ["exec", "-r", transport, "-i", id, "cat"], stdinFile: input)
                    #expect(echoed.code == 0, "\(transport): \(echoed.stderr)")
                    #expect(echoed.stdout == FileManager.default.contents(atPath: input), "\(transport): 10 MiB differ")
                    // A terminal: the container's own devpts, with the client's size before the command runs.
                    let tty = try await runCommand([
                        "/usr/bin/script", "-qec",
                        "stty cols 123 rows 45; "
                            + crictl.shell(["exec", "-r", transport, "-it", id, "sh", "-c", "stty size; tty"]),
                        "/dev/null",
                    ])
                    #expect(tty.out.contains("/dev/pts/"), "\(transport): \(tty.out)")
                    #expect(tty.out.contains("45 123"), "\(transport): \(tty.out)")
                }
            }
            // A restart with no stream open loses nothing: the container is still reachable.
            await daemon.stop()
            try await daemon.start()
            let again = try await runCommand(ctl.argv("exec", [id, "echo", "still-here"]))
            #expect(again.out == "still-here\n", "\(again.stderr)")
            // The test's own client reconnects (its channel saw the old daemon go).
            for _ in 0..<100 {
                if (try? await rt.version(.init())) != nil { break }
                // sleep: a poll pause; the loop checks the condition
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    /// `kubectl run -i --rm` / `kubectl attach -i`: a container created with stdin and stdin_once
    /// running `sh`; the client's end of input closes the container's stdin at once, `sh` exits and
    /// the attach ends with success; its stdin cannot be attached again. Also for a container with
    /// a terminal, attached by a client without one (what `kubectl attach -i` does: the kubelet asks
    /// with the container's tty, the client opens stderr instead of resize); the terminal's end of
    /// input is a ^D.
    @Test func anAttachToAStdinOnceContainerEndsWithItsInput() async throws {
        try await withPod { daemon, rt, pod, podID, _, crictl in
            let ctl = CocoonCtl(socket: daemon.socket)
            let input = NSTemporaryDirectory() + "cocoon-once-\(UUID().uuidString.prefix(8))"
            try "echo hello-$((40+2))\n".write(toFile: input, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: input) }  // test scratch
            var clients = [
                ("spdy", ctl.argv("attach", ["--transport", "spdy", "-i"])),
                ("websocket", ctl.argv("attach", ["--transport", "websocket", "-i"])),
                ("spdy-tty", ctl.argv("attach", ["--transport", "spdy", "-i"])),
                ("websocket-tty", ctl.argv("attach", ["--transport", "websocket", "-i"])),
            ]
            if let crictl {
                clients += [
                    ("crictl", crictl.prefix + ["attach", "-i"]), ("crictl-tty", crictl.prefix + ["attach", "-i"]),
                ]
            }
            for (name, argv) in clients {
                var once = container("once-\(name)", ["sh"], pod: pod, podID: podID)
                once.config.stdin = true
                once.config.stdinOnce = true
                once.config.tty = name.hasSuffix("-tty")
                once.config.logPath = "once-\(name).log"
                let id = try await run(rt, once)
                let attach = try await runCommand(argv + [id], stdinFile: input, timeout: .seconds(60))
                #expect(attach.code == 0 && attach.out.contains("hello-42"), "\(name): \(attach)")
                var status = try await rt.containerStatus(.with { $0.containerID = id }).status
                for _ in 0..<100 where status.state != .containerExited {
                    // sleep: a poll pause; the loop checks the condition
                    try await Task.sleep(for: .milliseconds(100))
                    status = try await rt.containerStatus(.with { $0.containerID = id }).status
                }
                #expect(status.state == .containerExited && status.exitCode == 0, "\(name): sh saw EOF: \(status)")
                let again = await #expect(throws: RPCError.self) {
                    _ = try await rt.attach(
                        .with {
                            $0.containerID = id
                            $0.stdin = true
                            $0.stdout = true
                        })
                }
                #expect(
                    again?.code == .failedPrecondition || again?.code == .notFound,
                    "\(name): \(String(describing: again))")
            }
        }
    }

    @Test func attachToATTYShellTypesAndReadsAndLogsOnlyStdout() async throws {
        try await withPod { daemon, rt, pod, podID, _, crictl in
            var shell = container("shell", ["sh"], pod: pod, podID: podID)
            shell.config.stdin = true
            shell.config.tty = true
            let id = try await run(rt, shell)
            // A second shell for the second client: the end of a client's input is a ^D to the shell.
            shell.config.metadata.name = "shell2"
            shell.config.logPath = "shell2.log"
            let second = try await run(rt, shell)
            let plain = try await run(rt, container("plain", ["sleep", "1000"], pod: pod, podID: podID))
            let noStdin = await #expect(throws: RPCError.self) {
                _ = try await rt.attach(
                    .with {
                        $0.containerID = plain
                        $0.stdin = true
                        $0.stdout = true
                    })
            }
            #expect(noStdin?.code == .invalidArgument)
            // `script` copies its stdin to the terminal the client runs on: a user typing. First
            // cocoonctl's client, then crictl's. The shell's terminal is the first of the
            // container's own devpts, its controlling terminal.
            let ownTyping =
                "(sleep 3; printf 'echo own-$((40+1)) $(tty) $(ls /dev/pts)\\n'; sleep 4) | /usr/bin/script -qec "
                + shellQuote(
                    CocoonCtl(socket: daemon.socket).argv("attach", ["-it", id]).map(shellQuote).joined(separator: " "))
                + " /dev/null"
            let ownAttach = try await runCommand(["/bin/sh", "-c", ownTyping], timeout: .seconds(60))
            #expect(
                ownAttach.out.contains("own-41 /dev/pts/0 0 ptmx"),
                "cocoonctl attach screen: \(ownAttach.out) \(ownAttach.stderr)")
            guard let crictl else { return }
            // `script` copies its stdin to the terminal crictl runs on: a user typing.
            let typing =
                "(sleep 3; printf 'echo hi-$((40+2))\\n'; sleep 4) | /usr/bin/script -qec "
                + shellQuote(crictl.shell(["attach", "-it", second])) + " /dev/null"
            let attach = try await runCommand(["/bin/sh", "-c", typing], timeout: .seconds(60))
            #expect(attach.out.contains("hi-42"), "attach screen: \(attach.out) \(attach.stderr)")
            let log = try String(contentsOfFile: pod.config.logDirectory + "/shell2.log", encoding: .utf8)
            #expect(log.contains("hi-42"))
            #expect(!log.contains(" stderr "), "a tty container logs only stdout")
        }
    }

    @Test func portForwardMovesBytesBothWaysAndManyConnectionsAtOnce() async throws {
        try await withPod { daemon, rt, _, podID, id, crictl in
            let badPort = await #expect(throws: RPCError.self) {
                _ = try await rt.portForward(
                    .with {
                        $0.podSandboxID = podID
                        $0.port = [70000]
                    })
            }
            #expect(badPort?.code == .invalidArgument)
            _ = try await execSync(
                rt, id,
                [
                    "sh", "-c",
                    "mkdir -p /www && seq 1 700000 > /www/blob && busybox httpd -p 8080 -h /www"
                        + " && head -c 52428800 /dev/urandom > /tmp/big"
                        + " && (sleep 1000 | nc -l -p 7000 > /tmp/recv &) && (nc -l -p 7001 < /tmp/big &)"
                        + " && (nc -l -p 7002 -e cat &)",
                ])
            let expected = Array((1...700_000).map { "\($0)\n" }.joined().utf8)
            // cocoonctl port-forward (WebSocket): the same file, and a refused port named.
            let ctl = CocoonCtl(socket: daemon.socket)
            let (ownWeb, ownRefused) = (freePort(), freePort())
            let own = try Command(ctl.argv("port-forward", [podID, "\(ownWeb):8080", "\(ownRefused):9999"]))
            defer { own.kill() }
            try await own.waitForOutput("Forwarding from 127.0.0.1:\(ownRefused)")
            let ownBody = httpBody(try await TCP.exchange(port: ownWeb, send: Array("GET /blob HTTP/1.0\r\n\r\n".utf8)))
            #expect(ownBody == expected)
            _ = try? await TCP.exchange(port: ownRefused, send: Array("hello".utf8))
            for _ in 0..<600 where !own.errors.contains("connection refused") {  // 30 s: CI boots VMs beside
                // sleep: a poll pause; the loop checks the condition
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(own.errors.contains("connection refused"), "\(own.errors)")

            // cocoonctl over SPDY keeps windows both ways: 16 MiB through `cat` in the pod comes back
            // byte-exact while it is still being sent (more than every window and buffer on the way:
            // the session must read the client's window updates while its writes wait for the pod).
            let ownEcho = freePort()
            let spdy = try Command(ctl.argv("port-forward", ["--transport", "spdy", podID, "\(ownEcho):7002"]))
            defer { spdy.kill() }
            try await spdy.waitForOutput("Forwarding from 127.0.0.1:\(ownEcho)")
            let echoed = [UInt8](try randomBytes(16 << 20))
            let back = try await TCP.exchange(port: ownEcho, send: echoed, concurrently: true)
            #expect(back.count == echoed.count && back == echoed, "echo: \(back.count) of \(echoed.count) bytes")

            guard let crictl else { return }
            let (web, up, down, refused) = (freePort(), freePort(), freePort(), freePort())
            let forward = try Command(
                crictl.prefix + ["port-forward", podID, "\(web):8080", "\(up):7000", "\(down):7001"])
            defer { forward.kill() }
            try await forward.waitForOutput("Forwarding from 127.0.0.1:\(down)")

            // Eight HTTP downloads at once on one session, each byte-exact.
            let bodies = try await withThrowingTaskGroup(of: [UInt8].self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        httpBody(try await TCP.exchange(port: web, send: Array("GET /blob HTTP/1.0\r\n\r\n".utf8)))
                    }
                }
                return try await group.reduce(into: [[UInt8]]()) { $0.append($1) }
            }
            #expect(bodies.count == 8)
            #expect(bodies.allSatisfy { $0 == expected }, "\(bodies.map(\.count)) vs \(expected.count)")

            // 50 MiB up (client to pod) and 50 MiB down, byte-exact.
            let upload = [UInt8](try randomBytes(50 << 20))
            _ = try await TCP.exchange(port: up, send: upload)
            let uploadFile = NSTemporaryDirectory() + "cocoon-up-\(UUID().uuidString.prefix(8))"
            FileManager.default.createFile(atPath: uploadFile, contents: Data(upload))
            defer { try? FileManager.default.removeItem(atPath: uploadFile) }  // test scratch
            var inPod = ""
            for _ in 0..<50 {
                inPod = try await execSync(rt, id, ["sh", "-c", "md5sum /tmp/recv"])
                if inPod.hasPrefix(try await md5(uploadFile)) { break }
                // sleep: a poll pause; the loop checks the condition
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(inPod.hasPrefix(try await md5(uploadFile)), "upload: \(inPod)")
            let downloaded = try await TCP.exchange(port: down, send: [], halfClose: false)
            let downloadFile = NSTemporaryDirectory() + "cocoon-down-\(UUID().uuidString.prefix(8))"
            FileManager.default.createFile(atPath: downloadFile, contents: Data(downloaded))
            defer { try? FileManager.default.removeItem(atPath: downloadFile) }  // test scratch
            #expect(downloaded.count == 50 << 20)
            #expect(try await execSync(rt, id, ["sh", "-c", "md5sum /tmp/big"]).hasPrefix(try await md5(downloadFile)))

            // A port nobody listens on: the client hears why.
            let failing = try Command(crictl.prefix + ["port-forward", podID, "\(refused):9999"])
            defer { failing.kill() }
            try await failing.waitForOutput("Forwarding from 127.0.0.1:\(refused)")
            _ = try? await TCP.exchange(port: refused, send: Array("hello".utf8))
            let result = try await failing.wait(timeout: .seconds(30))
            #expect(result.stderr.contains("connection refused"), "\(result.stderr)")
        }
    }

    @Test func urlsAreSingleUseAndHostileClientsAreCutOff() async throws {
        try await withPod(extraConfig: "[streaming]\nurl_ttl = 5\n") { daemon, rt, _, _, id, crictl in
            func url(tty: Bool = false) async throws -> (port: UInt16, path: String) {
                let url = try await rt.exec(
                    .with {
                        $0.containerID = id
                        $0.cmd = ["cat"]
                        $0.stdin = true
                        $0.stdout = true
                    }
                ).url
                let parsed = try #require(URL(string: url))
                return (UInt16(parsed.port ?? 0), parsed.path)
            }
            // No upgrade headers: 400 (and the token is spent); the same URL again: 404.
            let first = try await url()
            let plain = Array("GET \(first.path) HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
            let refused = String(
                decoding: try await TCP.exchange(port: first.port, send: plain, halfClose: false), as: UTF8.self)
            #expect(refused.hasPrefix("HTTP/1.1 400"), "\(refused)")
            let reused = String(
                decoding: try await TCP.exchange(port: first.port, send: plain, halfClose: false), as: UTF8.self)
            #expect(reused.hasPrefix("HTTP/1.1 404"), "\(reused)")
            let garbage = String(
                decoding: try await TCP.exchange(
                    port: first.port, send: Array("\u{1}\u{2} nonsense\r\n\r\n".utf8), halfClose: false),
                as: UTF8.self)
            #expect(garbage.hasPrefix("HTTP/1.1 400"), "\(garbage)")
            // A URL nobody opened within its time (url_ttl, 5 s here; the kubelet's minute by default): 404.
            let late = try await url()
            // sleep: the URL's time (url_ttl) runs out: the timing under test
            try await Task.sleep(for: .seconds(6))
            let lateRequest = Array("GET \(late.path) HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
            let expired = String(
                decoding: try await TCP.exchange(port: late.port, send: lateRequest, halfClose: false), as: UTF8.self)
            #expect(expired.hasPrefix("HTTP/1.1 404"), "\(expired)")

            // WebSocket v4 (channel.k8s.io's v4, no close channel): output on 1, the Status on 3.
            let v4 = try await execURL(rt, id, ["sh", "-c", "echo out-v4; exit 3"])
            let v4URL = try #require(URL(string: v4))
            let v4Upgrade =
                "GET \(v4URL.path) HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                + "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                + "Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n"
            let v4Reply = try await TCP.exchange(
                port: UInt16(v4URL.port ?? 0), send: Array(v4Upgrade.utf8), halfClose: false)
            let v4Head = String(decoding: v4Reply, as: UTF8.self)
            #expect(v4Head.contains("Sec-WebSocket-Protocol: v4.channel.k8s.io"), "\(v4Head)")
            let v4Frames = WebSocketFrames.parse(v4Reply)
            #expect(v4Frames.filter { $0.channel == 1 }.flatMap(\.data) == Array("out-v4\n".utf8), "\(v4Frames)")
            let v4Status = String(decoding: v4Frames.filter { $0.channel == 3 }.flatMap(\.data), as: UTF8.self)
            #expect(v4Status.contains("NonZeroExitCode") && v4Status.contains("\"message\":\"3\""), "\(v4Status)")

            // A terminal client that types before it sends its first size (a terminal's byte came
            // first once, from crictl under script): the input waits, not the session's reading,
            // so the command still starts with the client's size.
            let typed = try await rt.exec(
                .with {
                    $0.containerID = id
                    $0.cmd = ["sh", "-c", "stty size; tty"]
                    $0.stdout = true
                    $0.stdin = true
                    $0.tty = true
                }
            ).url
            let typedURL = try #require(URL(string: typed))
            let typedUpgrade =
                "GET \(typedURL.path) HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                + "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                + "Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n"
            let typedReply = try await TCP.exchange(
                port: UInt16(typedURL.port ?? 0),
                send: Array(typedUpgrade.utf8) + WebSocketFrames.client([0, 0x61])
                    + WebSocketFrames.client([4] + Array(#"{"Width":123,"Height":45}"#.utf8)),
                halfClose: false)
            let typedOut = String(
                decoding: WebSocketFrames.parse(typedReply).filter { $0.channel == 1 }.flatMap(\.data), as: UTF8.self)
            #expect(typedOut.contains("45 123") && typedOut.contains("/dev/pts/"), "\(typedOut)")

            // A SPDY frame claiming 16 MiB (the format's largest): the session ends, the daemon lives.
            let spdy = try await url()
            let upgrade =
                "POST \(spdy.path) HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                + "X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
            let hugeData: [UInt8] = [0, 0, 0, 1, 0, 0xff, 0xff, 0xff]
            let cut = try await TCP.exchange(port: spdy.port, send: Array(upgrade.utf8) + hugeData, halfClose: false)
            #expect(String(decoding: cut.prefix(12), as: UTF8.self) == "HTTP/1.1 101")
            // A WebSocket frame claiming 1 GiB.
            let ws = try await url()
            let wsUpgrade =
                "GET \(ws.path) HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                + "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                + "Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n"
            let gib: [UInt8] = [0x82, 0xff, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4]
            let wsCut = try await TCP.exchange(port: ws.port, send: Array(wsUpgrade.utf8) + gib, halfClose: false)
            let wsText = String(decoding: wsCut, as: UTF8.self)
            #expect(wsText.hasPrefix("HTTP/1.1 101"), "\(wsText)")
            #expect(wsText.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="))
            #expect(try await rt.version(.init()).runtimeName == "cocoon")

            // A client killed mid-stream leaves no process in the guest and no fd in the daemon.
            guard let daemonPID = daemon.pid else { return }
            let fdsBefore = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(daemonPID)/fd").count) ?? 0
            let fifo = NSTemporaryDirectory() + "cocoon-fifo-\(UUID().uuidString.prefix(8))"
            mkfifo(fifo, 0o600)
            defer { unlink(fifo) }  // test scratch
            let writer = try Command(["/bin/sh", "-c", "sleep 60 > \(fifo)"])
            defer { writer.kill() }
            let catArgs = ["-i", id, "sh", "-c", "echo started; exec cat"]
            let argv =
                crictl.map { $0.prefix + ["exec"] + catArgs } ?? CocoonCtl(socket: daemon.socket).argv("exec", catArgs)
            let client = try Command(argv, stdinFile: fifo)
            try await client.waitForOutput("started")
            #expect(try await execSync(rt, id, ["ps"]).contains("cat"))
            client.kill()
            var ps = ""
            for _ in 0..<100 {
                ps = try await execSync(rt, id, ["ps"])
                if !ps.contains(" cat") { break }
                // sleep: a poll pause; the loop checks the condition
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(!ps.contains(" cat"), "the exec outlived its client: \(ps)")
            let fdsAfter = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(daemonPID)/fd").count) ?? 0
            #expect(fdsAfter <= fdsBefore + 1, "daemon fds \(fdsBefore) -> \(fdsAfter)")

            // The same with a terminal: its pty goes with the exec (a pty lives in the container's
            // devpts as long as any fd of it is open, the agent's included).
            let ttyClient = try Command(
                CocoonCtl(socket: daemon.socket).argv("exec", ["-t", id, "sh", "-c", "echo started; exec sleep 999"]))
            try await ttyClient.waitForOutput("started")
            #expect(try await execSync(rt, id, ["ls", "/dev/pts"]).contains("0"))
            ttyClient.kill()
            var pts = ""
            for _ in 0..<100 {
                pts = try await execSync(rt, id, ["sh", "-c", "ls /dev/pts; ps | grep -c 'sleep 99[9]'; true"])
                if pts.split(whereSeparator: \.isWhitespace) == ["ptmx", "0"] { break }
                // sleep: a poll pause; the loop checks the condition
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(pts.split(whereSeparator: \.isWhitespace) == ["ptmx", "0"], "left in the guest: \(pts)")
        }
    }

    /// TLS (containerd's tls_cert_file/tls_key_file): the URLs are https and every client (crictl's
    /// SPDY and WebSocket, cocoonctl's) runs its session over it; and a session that moves nothing
    /// for stream_idle_timeout is closed, its exec killed.
    @Test func sessionsOverTLSAndAnIdleSessionIsClosedAndItsExecKilled() async throws {
        let keys = NSTemporaryDirectory() + "cocoon-tls-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: keys, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: keys) }  // test scratch
        let openssl = try await runCommand([
            "/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout", keys + "/key.pem", "-out", keys + "/cert.pem",
        ])
        try #require(openssl.code == 0, "openssl: \(openssl.stderr)")
        let config =
            "[streaming]\nstream_idle_timeout = 3\ntls_cert_file = \"\(keys)/cert.pem\"\n"
            + "tls_key_file = \"\(keys)/key.pem\"\n"
        try await withPod(extraConfig: config) { daemon, rt, _, _, id, crictl in
            let url = try await execURL(rt, id, ["true"])
            #expect(url.hasPrefix("https://127.0.0.1:"), "\(url)")
            // Plain HTTP to the TLS port is no session.
            let parsed = try #require(URL(string: url))
            let plain = try await TCP.exchange(
                port: UInt16(parsed.port ?? 0), send: Array("GET \(parsed.path) HTTP/1.1\r\nHost: x\r\n\r\n".utf8),
                halfClose: false)
            #expect(!String(decoding: plain, as: UTF8.self).hasPrefix("HTTP/1.1 101"))
            let ctl = CocoonCtl(socket: daemon.socket)
            for transport in ["spdy", "websocket"] {
                let own = try await runCommand(
                    ctl.argv(
                        "exec", ["--transport", transport, id, "sh", "-c", "echo tls-out; echo tls-err >&2; exit 4"]))
                #expect(own.out == "tls-out\n" && own.stderr == "tls-err\n" && own.code == 4, "\(transport): \(own)")
                if let crictl {
                    let theirs = try await runCommand(
                        crictl.prefix + ["exec", "-r", transport, id, "echo", "tls-crictl"])
                    #expect(theirs.out == "tls-crictl\n", "crictl \(transport): \(theirs.stderr)")
                }
            }
            let fifo = NSTemporaryDirectory() + "cocoon-idle-\(UUID().uuidString.prefix(8))"
            mkfifo(fifo, 0o600)
            defer { unlink(fifo) }  // test scratch
            let writer = try Command(["/bin/sh", "-c", "sleep 60 > \(fifo)"])
            defer { writer.kill() }
            let started = ContinuousClock.now
            let client = try Command(
                CocoonCtl(socket: daemon.socket).argv("exec", ["-i", id, "sh", "-c", "echo started; exec cat"]),
                stdinFile: fifo)
            try await client.waitForOutput("started")
            _ = try await client.wait(timeout: .seconds(30))
            let lasted = ContinuousClock.now - started
            #expect(lasted >= .seconds(3) && lasted < .seconds(20), "session lasted \(lasted)")
            var ps = ""
            for _ in 0..<100 {
                ps = try await execSync(rt, id, ["ps"])
                if !ps.contains(" cat") { break }
                // sleep: a poll pause; the loop checks the condition
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(!ps.contains(" cat"), "the idle session's exec still runs: \(ps)")
        }
    }
}
