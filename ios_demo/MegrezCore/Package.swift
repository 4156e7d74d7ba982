// swift-tools-version:5.9
// MegrezCore: the iPhone app's front end in plain Swift (Foundation only: no UIKit, no ExecuTorch), the line-for-line
// twin of android_demo/core (Kotlin). `swift test` runs on macOS and Linux; the tests read the Python SDK's vectors
// from ../../tests/vectors/front_end, located from the test file's own path (#filePath), so no copy step is needed.
import PackageDescription

let package = Package(
    name: "MegrezCore",
    platforms: [.iOS(.v17), .macOS(.v13)],
    products: [
        .library(name: "MegrezCore", targets: ["MegrezCore"]),
    ],
    targets: [
        .target(name: "MegrezCore"),
        .testTarget(
            name: "MegrezCoreTests",
            dependencies: ["MegrezCore"],
            // Decoded pixels of the vectors' JPEG inputs (see Fixtures/README.md); read through #filePath as well.
            exclude: ["Fixtures"]
        ),
    ]
)
