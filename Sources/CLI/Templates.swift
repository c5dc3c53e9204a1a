import ArgumentParser

/// `cocoonctl template ...`: Cocoon's VM templates (handlers with `start = "template"`).
struct TemplateGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "template", abstract: "VM template commands.", subcommands: [RebuildTemplate.self])
}

struct RebuildTemplate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rebuild", abstract: "Build a handler's template again now (and refill its pool).")
    @OptionGroup var global: GlobalOptions
    @Option(help: "The runtime handler (default: every handler with start = \"template\").") var handler: String = ""

    func run() async throws {
        try await runCLI {
            let response = try await global.endpoint().rebuildTemplates(
                .init(handler: handler), options: global.callOptions())
            for t in response.templates {
                print(
                    "Rebuilt \(t.handler): key \(t.key), built in \(Int(t.buildMs)) ms, \(t.ramDataMiB) MiB of RAM data"
                )
            }
        }
    }
}
