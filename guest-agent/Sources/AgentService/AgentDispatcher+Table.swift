import AgentAPI

/// The routing table: every request kind of the agent API and its handler, in one place.
extension AgentDispatcher {
    static var table: [Route] {
        containerRoutes + streamRoutes + [
            route("health", Cocoon_Agent_V4_HealthRequest.self, { if case .health(let r) = $0 { r } else { nil } }) {
                d, _, _ in .answer(.health(d.pod.health()))
            },
            route(
                "shutdown", Cocoon_Agent_V4_ShutdownRequest.self, { if case .shutdown(let r) = $0 { r } else { nil } }
            ) { _, _, _ in
                var outcome = Outcome.answer(.shutdown(Cocoon_Agent_V4_ShutdownResponse()))
                outcome.then = .powerOff
                return outcome
            },
            route("detach", Cocoon_Agent_V4_DetachRequest.self, { if case .detach(let r) = $0 { r } else { nil } }) {
                _, _, _ in
                var outcome = Outcome.answer(.detach(Cocoon_Agent_V4_DetachResponse()))
                outcome.then = .detach
                return outcome
            },
            route(
                "authenticate", Cocoon_Agent_V4_AuthenticateRequest.self,
                { if case .authenticate(let r) = $0 { r } else { nil } }
            ) { _, _, _ in
                .answer(.authenticate(Cocoon_Agent_V4_AuthenticateResponse()))  // the session is already open
            },
            route(
                "configurePod", Cocoon_Agent_V4_ConfigurePodRequest.self,
                { if case .configurePod(let r) = $0 { r } else { nil } }
            ) { d, r, _ in
                try d.pod.configure(r)
                return .answer(.configurePod(Cocoon_Agent_V4_ConfigurePodResponse()))
            },
            route(
                "updatePodResources", Cocoon_Agent_V4_UpdatePodResourcesRequest.self,
                { if case .updatePodResources(let r) = $0 { r } else { nil } }
            ) { d, r, _ in
                try d.pod.updateResources(r)
                return .answer(.updatePodResources(Cocoon_Agent_V4_UpdatePodResourcesResponse()))
            },
        ]
    }

    private static var containerRoutes: [Route] {
        [
            route(
                "createContainer", Cocoon_Agent_V4_CreateContainerRequest.self,
                { if case .createContainer(let r) = $0 { r } else { nil } }
            ) { d, r, _ in
                try d.containers.create(r)
                return .answer(.createContainer(Cocoon_Agent_V4_CreateContainerResponse()))
            },
            route(
                "startContainer", Cocoon_Agent_V4_StartContainerRequest.self,
                { if case .startContainer(let r) = $0 { r } else { nil } }
            ) { d, r, _ in
                var reply = Cocoon_Agent_V4_StartContainerResponse()
                reply.pid = try d.containers.start(r.id)
                return .answer(.startContainer(reply))
            },
            route("exec", Cocoon_Agent_V4_ExecRequest.self, { if case .exec(let r) = $0 { r } else { nil } }) {
                d, r, _ in
                var reply = Cocoon_Agent_V4_ExecResponse()
                reply.pid = try d.containers.exec(r)
                return .answer(.exec(reply))
            },
            route("signal", Cocoon_Agent_V4_SignalRequest.self, { if case .signal(let r) = $0 { r } else { nil } }) {
                d, r, _ in
                try d.containers.signal(r)
                return .answer(.signal(Cocoon_Agent_V4_SignalResponse()))
            },
            route(
                "containerStatus", Cocoon_Agent_V4_ContainerStatusRequest.self,
                { if case .containerStatus(let r) = $0 { r } else { nil } }
            ) { d, r, _ in
                .answer(.containerStatus(try d.containers.status(r.id)))
            },
            route(
                "removeContainer", Cocoon_Agent_V4_RemoveContainerRequest.self,
                { if case .removeContainer(let r) = $0 { r } else { nil } }
            ) { d, r, _ in
                // Exit events the removal caused follow its reply.
                var outcome = Outcome.answer(.removeContainer(Cocoon_Agent_V4_RemoveContainerResponse()))
                outcome.events = d.containers.remove(r.id)
                return outcome
            },
            route(
                "updateResources", Cocoon_Agent_V4_UpdateResourcesRequest.self,
                { if case .updateResources(let r) = $0 { r } else { nil } }
            ) { d, r, _ in
                try d.containers.updateResources(r)
                return .answer(.updateResources(Cocoon_Agent_V4_UpdateResourcesResponse()))
            },
            route(
                "unmountDisk", Cocoon_Agent_V4_UnmountDiskRequest.self,
                { if case .unmountDisk(let r) = $0 { r } else { nil } }
            ) { d, r, _ in
                try d.containers.unmountDisk(r.serial)
                return .answer(.unmountDisk(Cocoon_Agent_V4_UnmountDiskResponse()))
            },
        ]
    }

    /// Process streams and forwarded ports: requests answered when their bytes are written.
    private static var streamRoutes: [Route] {
        [
            route(
                "writeStdin", Cocoon_Agent_V4_WriteStdinRequest.self,
                { if case .writeStdin(let r) = $0 { r } else { nil } }
            ) { d, r, id in
                let replies = try d.containers.writeStdin(r, replyTo: id)
                // Answered once written: now when its reply is among these, else by a later flush.
                return Outcome(replies: replies.contains { $0.id == id } ? replies : [])
            },
            route("resize", Cocoon_Agent_V4_ResizeRequest.self, { if case .resize(let r) = $0 { r } else { nil } }) {
                d, r, _ in
                try d.containers.resize(r)
                return .answer(.resize(Cocoon_Agent_V4_ResizeResponse()))
            },
            route(
                "ackOutput", Cocoon_Agent_V4_AckOutputRequest.self,
                { if case .ackOutput(let r) = $0 { r } else { nil } }
            ) { d, r, _ in
                Outcome(response: Cocoon_Agent_V4_Response(), events: d.containers.ackOutput(r))
            },
            route(
                "openPort", Cocoon_Agent_V4_OpenPortRequest.self, { if case .openPort(let r) = $0 { r } else { nil } }
            ) { d, r, id in
                Outcome(replies: try d.ports.open(r, replyTo: id))
            },
            route(
                "writePort", Cocoon_Agent_V4_WritePortRequest.self,
                { if case .writePort(let r) = $0 { r } else { nil } }
            ) { d, r, id in
                Outcome(replies: try d.ports.write(r, replyTo: id))
            },
            route("ackPort", Cocoon_Agent_V4_AckPortRequest.self, { if case .ackPort(let r) = $0 { r } else { nil } }) {
                d, r, _ in
                d.ports.ack(r)
                return Outcome(response: Cocoon_Agent_V4_Response())
            },
            route(
                "closePort", Cocoon_Agent_V4_ClosePortRequest.self,
                { if case .closePort(let r) = $0 { r } else { nil } }
            ) { d, r, _ in
                // The writes it abandons are answered first, then the close itself.
                var outcome = Outcome.answer(.closePort(Cocoon_Agent_V4_ClosePortResponse()))
                outcome.replies = d.ports.close(r.connectionID)
                return outcome
            },
        ]
    }
}
