import ArgumentParser
import CLI
import CRIAPI
import Testing

@Suite struct CLITests {
    @Test func endpointParsing() throws {
        #expect(try Endpoint(parsing: "unix:///run/x.sock").socketPath == "/run/x.sock")
        #expect(try Endpoint(parsing: "/run/y.sock").socketPath == "/run/y.sock")
        #expect(throws: CLIError.self) { try Endpoint(parsing: "tcp://1.2.3.4:5") }
        #expect(throws: CLIError.self) { try Endpoint(parsing: "unix://relative") }
    }

    @Test func podsFiltersBecomeACRIFilter() throws {
        let q = try PodsQuery(id: "abc", state: "ready", labels: ["app=web", "empty="], name: "we")
        #expect(q.request.filter.id == "abc")
        #expect(q.request.filter.state.state == .sandboxReady)
        #expect(q.request.filter.labelSelector == ["app": "web", "empty": ""])
        var pod = Runtime_V1_PodSandbox()
        pod.metadata.name = "web-1"
        #expect(q.matchesLocally(pod))
        pod.metadata.name = "db"
        #expect(!q.matchesLocally(pod))
        #expect(try !PodsQuery().request.hasFilter)
        #expect(throws: (any Error).self) { try PodsQuery(state: "running") }
        #expect(throws: (any Error).self) { try PodsQuery(labels: ["novalue"]) }
    }

    @Test func commandLineParsing() throws {
        let cmd = try CocoonCtl.parseAsRoot([
            "pods", "--label", "a=b", "--state", "notready", "-o", "json", "-r", "unix:///tmp/s.sock",
        ])
        #expect(String(describing: type(of: cmd)) == "Pods")
        #expect(throws: (any Error).self) { try CocoonCtl.parseAsRoot(["pods", "-o", "xml"]) }
        #expect(throws: (any Error).self) { try CocoonCtl.parseAsRoot(["stopp"]) }
        #expect(throws: (any Error).self) { try CocoonCtl.parseAsRoot(["runp"]) }
        _ = try CocoonCtl.parseAsRoot(["runp", "--runtime", "libvirt", "pod.yaml"])
        _ = try CocoonCtl.parseAsRoot(["rmp", "--all"])
    }

    @Test func specFilesInYAMLAndJSON() throws {
        let yaml = try SpecFile.parse(
            Runtime_V1_PodSandboxConfig.self,
            text: """
                metadata:
                  name: web
                  namespace: default
                  uid: u1
                  attempt: 2
                log_directory: /var/log/pods/x
                labels: {app: web}
                linux:
                  resources:
                    memory_limit_in_bytes: 134217728
                unknown_field: ignored
                """)
        #expect(yaml.metadata.name == "web" && yaml.metadata.attempt == 2)
        #expect(yaml.logDirectory == "/var/log/pods/x")
        #expect(yaml.labels == ["app": "web"])
        #expect(yaml.linux.resources.memoryLimitInBytes == 134_217_728)
        let json = try SpecFile.parse(
            Runtime_V1_PodSandboxConfig.self, text: #"{"metadata":{"name":"j","namespace":"n"},"logDirectory":"/l"}"#)
        #expect(json.metadata.name == "j" && json.logDirectory == "/l")
        #expect(throws: CLIError.self) { try SpecFile.parse(Runtime_V1_PodSandboxConfig.self, text: "metadata: [") }
        #expect(throws: CLIError.self) {
            try SpecFile.parse(Runtime_V1_PodSandboxConfig.self, text: #"{"metadata": 5}"#)
        }
    }
}
