import AgentAPI

/// What serving one request produced, in the order the session sends it: replies to earlier
/// requests (or to this one, when it was answered among them), this request's response, then the
/// events it caused; and what the session does next.
public struct Outcome: Sendable {
    public enum Then: Sendable, Equatable { case carryOn, powerOff, detach }
    public var replies: [DeferredReply] = []
    /// Nil when the request is answered among `replies`, later, or never (a notification, id 0).
    public var response: Cocoon_Agent_V4_Response?
    public var events: [Outgoing] = []
    public var then = Then.carryOn

    public init(
        replies: [DeferredReply] = [], response: Cocoon_Agent_V4_Response? = nil, events: [Outgoing] = [],
        then: Then = .carryOn
    ) {
        self.replies = replies
        self.response = response
        self.events = events
        self.then = then
    }

    static func answer(_ result: Cocoon_Agent_V4_Response.OneOf_Result) -> Outcome {
        var response = Cocoon_Agent_V4_Response()
        response.result = result
        return Outcome(response: response)
    }

    static func failure(_ error: AgentFailure) -> Outcome { Outcome(response: .failure(error)) }
}

extension Cocoon_Agent_V4_Response {
    /// The response that carries a refusal to the host.
    public static func failure(_ error: AgentFailure) -> Cocoon_Agent_V4_Response {
        var response = Cocoon_Agent_V4_Response()
        var e = Cocoon_Agent_V4_AgentError()
        e.code = error.code
        e.message = error.message
        response.error = e
        return response
    }
}

/// Serves the agent API's requests: one handler per request kind, all registered in `routes`, each
/// driving the pod's services. The transport (sessions, framing, polling, sending) is the agent
/// server's; this type never touches a descriptor, so it is unit-tested with fake services.
public struct AgentDispatcher<Containers: ContainerService, Ports: PortService, Pod: PodService> {
    public var containers: Containers
    public var ports: Ports
    public var pod: Pod
    private let routes: [Route]

    public typealias Call = Cocoon_Agent_V4_Request.OneOf_Call

    public init(containers: Containers, ports: Ports, pod: Pod) {
        self.containers = containers
        self.ports = ports
        self.pod = pod
        self.routes = Self.table
    }

    /// Serves one request of the session; a request kind this agent does not know is UNIMPLEMENTED.
    /// A notification (id 0) gets no response.
    public mutating func serve(_ request: Cocoon_Agent_V4_Request, id: UInt64) -> Outcome {
        var outcome = Outcome(response: .failure(AgentFailure(code: .unimplemented, message: Self.unknown)))
        if let call = request.call, let route = routes.first(where: { $0.matches(call) }) {
            outcome = route.serve(&self, call, id)
        }
        if id == 0 { outcome.response = nil }
        return outcome
    }

    /// The request's kind ("startContainer"), never its contents: for logs and the watchdog.
    public func name(of request: Cocoon_Agent_V4_Request) -> String {
        guard let call = request.call else { return "unknown" }
        return routes.first(where: { $0.matches(call) })?.name ?? "unknown"
    }

    /// The request kinds served, by name (for tests and logs).
    public var kinds: [String] { routes.map(\.name) }

    static var unknown: String { "request kind not known to agent API v\(agentAPIVersion)" }

    /// One request kind: its name, how to recognise it, and its handler.
    struct Route {
        let name: String
        let matches: (Call) -> Bool
        let serve: (inout AgentDispatcher, Call, UInt64) -> Outcome
    }

    /// Registers a handler for the requests `match` extracts; a thrown failure becomes the response.
    /// (Handlers throw only the `AgentFailure`s of the services they call; anything else would be
    /// an internal error.)
    static func route<R>(
        _ name: String, _ type: R.Type, _ match: @escaping (Call) -> R?,
        _ handler: @escaping (inout AgentDispatcher, R, UInt64) throws -> Outcome
    ) -> Route {
        Route(name: name, matches: { match($0) != nil }) { dispatcher, call, id in
            guard let request = match(call) else { return .failure(.internal("\(name): not a \(name) request")) }
            do {
                return try handler(&dispatcher, request, id)
            } catch let failure as AgentFailure {
                return .failure(failure)
            } catch {
                return .failure(.internal("\(name): \(error)"))
            }
        }
    }
}
