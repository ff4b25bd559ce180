import ArgumentParser

@main
struct StatusHubCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "statushub",
        abstract: "Real-time status hub for the factory floor.",
        subcommands: [ServeCommand.self, PublishCommand.self, TailCommand.self, HashKeyCommand.self, CatalogCommand.self, SimulateCommand.self, SparkplugEdgeCommand.self],
        defaultSubcommand: ServeCommand.self
    )
}
