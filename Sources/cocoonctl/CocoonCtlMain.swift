import ArgumentParser
import CLI

/// Entry point of the cocoonctl binary; the commands live in the CLI library (unit-testable).
@main
struct CocoonCtlMain: AsyncParsableCommand {
    static let configuration = CocoonCtl.configuration
}
