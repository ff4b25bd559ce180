#!/usr/bin/env bash
# Regenerates Sources/StatusHubMQTT/Sparkplug/sparkplug_b.pb.swift from scripts/sparkplug_b.proto. Run it only
# when the .proto changes: the generated file is committed, so neither a developer's build nor CI builds the
# plugin (protoc-gen-swift takes minutes to compile). Needs protoc (Debian: protobuf-compiler).
#
# The plugin is built from the same swift-protobuf release the package depends on (Package.swift), in a
# scratch folder of its own, outside the project's .build:
#   .build-protoc/swift-protobuf  (a clone of the tag), built with `swift build --product protoc-gen-swift`.
set -euo pipefail
cd "$(dirname "$0")/.."
version=1.39.0
scratch=.build-protoc/swift-protobuf
if [ ! -d "$scratch" ]; then
    git clone -q --depth 1 --branch "$version" https://github.com/apple/swift-protobuf "$scratch"
fi
(cd "$scratch" && swift build --product protoc-gen-swift)
plugin="$scratch/.build/debug/protoc-gen-swift"
protoc --plugin=protoc-gen-swift="$plugin" \
    --swift_opt=Visibility=Public \
    --proto_path=scripts \
    --swift_out=Sources/StatusHubMQTT/Sparkplug \
    scripts/sparkplug_b.proto
echo "generated Sources/StatusHubMQTT/Sparkplug/sparkplug_b.pb.swift"
