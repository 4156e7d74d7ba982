"""ios_demo: what can be checked here without a Swift compiler (none can be had on our machines).

- every `.swift` file parses with PyPI's tree-sitter-swift grammar: no ERROR and no MISSING node;
- MegrezCore's XCTests name every vector case the SDK writes, and the vectors are current (test_runner_plan's check);
  the Pillow-decoded JPEG fixtures the Swift tests read on Linux equal Pillow's decoding;
- MegrezCore is the Kotlin core's twin: a Swift file per Kotlin file, every Kotlin type and function name in it, in
  the same order; Foundation only (no Apple-only import), no package dependency; the benchmark constants equal the
  SDK's;
- the app: the ExecuTorch package pinned by revision with the products and `-all_load`, the increased-memory-limit
  entitlement, file sharing, usage descriptions; chat goes through our Objective-C++ wrapper (mmap, raw bytes), never
  through ExecuTorchLLM's MultimodalRunner.
- the committed MegrezDemo.xcodeproj is what ios_demo/gen_xcodeproj.py writes from project.yml now; it parses as an
  OpenStep plist with no dangling or orphan object; every .swift/.mm file is compiled, the ExecuTorch products and
  MegrezCore are linked, the revision and the target's settings are project.yml's.
- the ExecuTorch headers fetch: a pre-build script phase before Sources runs scripts/fetch_executorch_headers.sh
  (its output: the stamp the script writes; user-script sandboxing off); the script pins one tag, is valid bash and
  checks every ExecuTorch header MegrezRunner.mm includes; run against a local stand-in repository, a failed,
  interrupted or incomplete fetch leaves nothing at the destination and a second run is a no-op without network.

Parsing is syntax only: it proves neither that the code type-checks nor that it runs (ios_demo/README.md).
"""

from __future__ import annotations

import importlib.util
import plistlib
import re
from pathlib import Path

import numpy as np
import pytest
import tree_sitter_swift
import yaml
from PIL import Image
from tree_sitter import Language, Parser

REPO = Path(__file__).resolve().parents[1]
IOS = REPO / "ios_demo"
CORE = IOS / "MegrezCore"
CORE_SOURCES = CORE / "Sources" / "MegrezCore"
CORE_TESTS = CORE / "Tests" / "MegrezCoreTests"
APP = IOS / "MegrezDemo"
KOTLIN_CORE = REPO / "android_demo" / "core" / "src" / "main" / "kotlin" / "dev" / "megrezmobile" / "core"
KOTLIN_TESTS = REPO / "android_demo" / "core" / "src" / "test" / "kotlin" / "dev" / "megrezmobile" / "core"
VECTORS = REPO / "tests" / "vectors" / "front_end"

SWIFT = Language(tree_sitter_swift.language())


def _swift_files() -> list[Path]:
    return sorted(p for p in IOS.rglob("*.swift") if ".build" not in p.parts)


def _parse(path: Path):
    return Parser(SWIFT).parse(path.read_bytes())


def _problems(node, out: list[str]) -> list[str]:
    if node.type == "ERROR" or node.is_missing:
        kind = f"MISSING {node.type}" if node.is_missing else "ERROR"
        out.append(f"{kind} at line {node.start_point[0] + 1}, column {node.start_point[1] + 1}")
    for child in node.children:
        _problems(child, out)
    return out


# --- syntax ---------------------------------------------------------------------------------------------------------


def test_there_are_swift_sources_to_check():
    files = _swift_files()
    assert len([f for f in files if CORE_SOURCES in f.parents]) >= 15
    assert len([f for f in files if CORE_TESTS in f.parents]) >= 3
    assert len([f for f in files if APP in f.parents]) >= 5


@pytest.mark.parametrize("path", _swift_files(), ids=lambda p: str(p.relative_to(IOS)))
def test_swift_file_parses_without_errors(path):
    tree = _parse(path)
    problems = _problems(tree.root_node, [])
    assert not problems and not tree.root_node.has_error, f"{path.relative_to(REPO)}: {problems[:10]}"


def test_the_parser_does_find_swift_errors():
    """The grammar is strict enough to matter: broken Swift gives error nodes."""
    for broken in (b"func f( { let = }", b"struct S { var x: Int = }", b"let s = \"unterminated\n"):
        tree = Parser(SWIFT).parse(broken)
        assert _problems(tree.root_node, []) or tree.root_node.has_error, broken


# --- vectors --------------------------------------------------------------------------------------------------------


def _swift_string_list(source: str, name: str) -> list[str]:
    match = re.search(rf"static let {name}\s*=\s*\[(.*?)\]", source, re.S)
    assert match, f"{name} not found"
    return re.findall(r'"([^"]*)"', match.group(1))


def test_xctests_name_every_vector_case():
    cases = sorted(p.name for p in (VECTORS / "cases").iterdir() if p.is_dir())
    assert len(cases) >= 10
    source = (CORE_TESTS / "VectorsTests.swift").read_text()
    assert _swift_string_list(source, "EXPECTED_CASES") == cases, (
        "VectorsTest.EXPECTED_CASES must list tests/vectors/front_end/cases exactly")
    # The Swift suite runs every test the Kotlin vector suite runs (same names, XCTest's `test` prefix).
    kotlin = re.findall(r"@Test fun (\w+)\(", (KOTLIN_TESTS / "VectorsTest.kt").read_text())
    swift = set(re.findall(r"func test(\w+)\(", source))
    assert len(kotlin) >= 6
    missing = [k for k in kotlin if k[0].upper() + k[1:] not in swift]
    assert not missing, f"Kotlin vector tests with no Swift twin: {missing}"


def test_xctests_mirror_every_kotlin_unit_test():
    kotlin_source = (KOTLIN_TESTS / "UnitTests.kt").read_text()
    swift_source = (CORE_TESTS / "UnitTests.swift").read_text()
    kotlin_classes = re.findall(r"^class (\w+Test)\b", kotlin_source, re.M)
    swift_classes = set(re.findall(r"^final class (\w+Test): XCTestCase", swift_source, re.M))
    assert len(kotlin_classes) >= 6 and set(kotlin_classes) <= swift_classes
    swift_tests = set(re.findall(r"func test(\w+)\(", swift_source))
    kotlin_tests = re.findall(r"@Test fun (\w+)\(", kotlin_source)
    renamed = {"refusesWhatTheAarCannotRun": "RefusesWhatTheAppCannotRun"}  # the iOS app links Core ML
    missing = [t for t in kotlin_tests if renamed.get(t, t[0].upper() + t[1:]) not in swift_tests]
    assert not missing, f"Kotlin unit tests with no Swift twin: {missing}"


def test_committed_vectors_are_current(tmp_path):
    """The Swift tests read the same vectors as Kotlin: the Python side's own check that they are what the SDK writes."""
    from test_runner_plan import test_committed_vectors_are_current as python_side_check

    python_side_check(tmp_path)


def test_jpeg_fixtures_are_pillows_decoding():
    fixtures = CORE_TESTS / "Fixtures" / "decoded"
    jpegs = sorted(p for p in (VECTORS / "inputs").iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    assert jpegs, "the vectors have JPEG inputs (sample photo, EXIF-rotated photo)"
    assert sorted(p.name for p in fixtures.glob("*.png")) == sorted(f"{p.name}.png" for p in jpegs), (
        "run ios_demo/MegrezCore/Tests/MegrezCoreTests/Fixtures/make_fixtures.py")
    for jpeg in jpegs:
        with Image.open(jpeg) as im:
            expected = np.asarray(im.convert("RGB"))
        with Image.open(fixtures / f"{jpeg.name}.png") as im:
            assert im.mode == "RGB" and im.info.get("interlace", 0) == 0  # what the tests' PNG reader takes
            got = np.asarray(im)
        assert got.shape == expected.shape and np.array_equal(got, expected), jpeg.name


def test_vector_pngs_are_what_the_swift_png_reader_takes():
    """PngDecoder.swift reads 8-bit, non-interlaced PNG of colour types 0, 2, 3, 4 and 6."""
    pngs = list(VECTORS.rglob("*.png")) + list((CORE_TESTS / "Fixtures").rglob("*.png"))
    assert len(pngs) > 20
    for png in pngs:
        head = png.read_bytes()[:33]
        assert head[12:16] == b"IHDR", png
        depth, colour, interlace = head[24], head[25], head[28]
        assert depth == 8 and colour in (0, 2, 3, 4, 6) and interlace == 0, (png, depth, colour, interlace)


# --- the Kotlin twin ------------------------------------------------------------------------------------------------


def _kotlin_names(path: Path) -> list[str]:
    """Type and function names in order of appearance, private ones left out."""
    names = []
    for line in path.read_text().splitlines():
        code = line.split("//")[0]
        for m in re.finditer(r"\b(?:class|object|interface)\s+(\w+)|\bfun\s+(?:<[^>]*>\s*)?(?:\w+\.)?(\w+)\s*\(", code):
            if not re.search(r"\bprivate\b", code[:m.start()]):  # `private fun`, `private class` (not a parameter)
                names.append(m.group(1) or m.group(2))
    return names


def _swift_names(path: Path) -> list[str]:
    names = []

    def walk(node):
        if node.type in ("class_declaration", "protocol_declaration", "function_declaration"):
            name = node.child_by_field_name("name")
            private = any(c.type == "modifiers" and b"private" in c.text for c in node.children)
            if name is not None and not private:  # as the Kotlin reader leaves `private` ones out
                names.append(name.text.decode())
        for child in node.children:
            walk(child)

    walk(_parse(path).root_node)
    return names


def _kotlin_files() -> list[Path]:
    return sorted(KOTLIN_CORE.glob("*.kt"))


def test_every_kotlin_core_file_has_a_swift_twin():
    kotlin = [p.stem for p in _kotlin_files()]
    assert len(kotlin) >= 15
    swift = {p.stem for p in CORE_SOURCES.glob("*.swift")}
    assert not [k for k in kotlin if k not in swift], "a Kotlin core file without its Swift twin"


@pytest.mark.parametrize("kotlin_file", _kotlin_files(), ids=lambda p: p.name)
def test_swift_twin_declares_the_kotlin_names_in_order(kotlin_file):
    kotlin = list(dict.fromkeys(_kotlin_names(kotlin_file)))  # first occurrences, in order
    swift_file = CORE_SOURCES / f"{kotlin_file.stem}.swift"
    swift = list(dict.fromkeys(_swift_names(swift_file)))
    missing = [n for n in kotlin if n not in swift]
    assert not missing, f"{swift_file.name} lacks {missing} (Kotlin {kotlin_file.name})"
    order = [n for n in swift if n in kotlin]
    assert order == kotlin, f"{swift_file.name}: names in another order than {kotlin_file.name}:\n{order}\n{kotlin}"


def test_the_twin_check_sees_the_names():
    """The name readers find what they must (a reader that finds nothing would pass every twin check)."""
    kotlin = _kotlin_names(KOTLIN_CORE / "RunnerPlan.kt")
    swift = _swift_names(CORE_SOURCES / "RunnerPlan.swift")
    for name in ("Content", "ChatMessage", "Continuation", "RunnerInput", "Text", "Image", "Audio", "RunnerPlan",
                 "RunnerPlanner", "plan", "toJson", "ChatFormatError"):
        assert name in kotlin and name in swift, name
    assert "planImage" not in kotlin and "planImage" not in swift  # private on both sides: left out


def test_core_is_foundation_only_and_dependency_free():
    manifest = (CORE / "Package.swift").read_text()
    assert manifest.startswith("// swift-tools-version:5.9")
    assert "dependencies: [\"MegrezCore\"]" in manifest and ".package(" not in manifest
    allowed = {"Foundation", "XCTest", "MegrezCore", "PackageDescription"}
    for path in CORE.rglob("*.swift"):
        imports = set(re.findall(r"^\s*(?:@testable\s+)?import\s+(\w+)", path.read_text(), re.M))
        assert imports <= allowed, f"{path.relative_to(REPO)} imports {imports - allowed} (Linux has only Foundation)"
        # Apple-only APIs that Foundation-only files could still call and that do not exist on Linux.
        code = "\n".join(line.split("//")[0] for line in path.read_text().splitlines())
        for apple_only in ("autoreleasepool", "CryptoKit", "CC_SHA256", "NSImage", "UIImage", "CGImage", "os_log"):
            assert not re.search(rf"\b{apple_only}\b", code), f"{path.name} uses {apple_only}"


def test_swift_benchmark_contract_equals_the_sdks():
    from megrez_mobile.harness import app_contract as c

    text = (CORE_SOURCES / "BenchmarkContract.swift").read_text()
    consts = dict(re.findall(r'static let (\w+) = "([^"]*)"', text))
    assert consts["APP_PACKAGE"] == c.APP_PACKAGE
    assert consts["BENCHMARK_ACTIVITY"] == c.BENCHMARK_ACTIVITY_CLASS
    for name in ("EXTRA_BUNDLE_DIR", "EXTRA_RESULT_PATH", "EXTRA_ARGS", "ADB_BUNDLE_ROOT", "TMP_SUFFIX",
                 "ERROR_SUFFIX", "RESULT_SCHEMA", "LOAD_METRIC", "VISION_METRIC", "AUDIO_METRIC",
                 "PEAK_MEMORY_METRIC"):
        assert consts[name] == getattr(c, name), name
    assert tuple(re.findall(r'\("(--[\w-]+)", "(\w+)"\)', text)) == c.AGENT_OPTIONS
    assert tuple(_swift_string_list(text, "RESULT_KEYS")) == c.RESULT_KEYS
    assert tuple(_swift_string_list(text, "TTFT_PROMPTS")) == c.TTFT_PROMPTS
    for fn, arg, python in (("prefillMetric", 128, c.prefill_metric), ("decodeMetric", 128, c.decode_metric),
                            ("ttftMetric", "text", c.ttft_metric)):
        template = re.search(rf'func {fn}\(_ \w+: \w+\) -> String {{ "([^"]*)" }}', text).group(1)
        assert re.sub(r"\\\(\w+\)", str(arg), template) == python(arg)


# --- the app --------------------------------------------------------------------------------------------------------

# The head of `swiftpm-1.5.0` (Package.swift `version = "1.5.0"`); no `swiftpm-1.5.1` branch was published.
SWIFTPM_1_5_HEAD = "56cc93a96d5fb8d21554ec5f00fbad5a5b228bc4"
PRODUCTS = ("executorch", "executorch_llm", "backend_xnnpack", "backend_coreml", "kernels_optimized",
            "kernels_quantized", "kernels_llm")


def test_project_pins_executorch_by_revision_with_the_products():
    spec = yaml.safe_load((IOS / "project.yml").read_text())
    package = spec["packages"]["ExecuTorch"]
    assert package["url"] == "https://github.com/pytorch/executorch.git"
    assert str(package["revision"]) == SWIFTPM_1_5_HEAD
    assert SWIFTPM_1_5_HEAD in (IOS / "README.md").read_text()
    assert "branch" not in package and "version" not in package
    target = spec["targets"]["MegrezDemo"]
    linked = [d["product"] for d in target["dependencies"] if d.get("package") == "ExecuTorch"]
    assert sorted(linked) == sorted(PRODUCTS)
    settings = target["settings"]["base"]
    assert "-all_load" in settings["OTHER_LDFLAGS"]
    assert settings["IPHONEOS_DEPLOYMENT_TARGET"] == "17.0"
    assert settings["SWIFT_OBJC_BRIDGING_HEADER"].endswith("MegrezDemo-Bridging-Header.h")
    assert {"package": "MegrezCore"} in [{"package": d.get("package")} for d in target["dependencies"]]
    assert spec["packages"]["MegrezCore"]["path"] == "MegrezCore"


def test_entitlements_and_info_plist():
    entitlements = plistlib.loads((APP / "MegrezDemo.entitlements").read_bytes())
    assert entitlements["com.apple.developer.kernel.increased-memory-limit"] is True
    info = plistlib.loads((APP / "Info.plist").read_bytes())
    assert info["UIFileSharingEnabled"] is True and info["LSSupportsOpeningDocumentsInPlace"] is True
    for key in ("NSCameraUsageDescription", "NSMicrophoneUsageDescription", "NSPhotoLibraryUsageDescription"):
        assert len(info[key]) > 20, key


def test_chat_goes_through_our_wrapper_not_executorch_llm():
    """ExecuTorchLLM's MultimodalRunner loads the whole .pte and loses partial UTF-8: the app must not call it."""
    app_swift = "\n".join(p.read_text() for p in APP.rglob("*.swift"))
    assert "MegrezRunner" in app_swift and "Utf8PieceBuffer" in app_swift and "RunnerPlanner" in app_swift
    assert not re.search(r"\bMultimodalRunner\s*\(", app_swift)
    assert "import ExecuTorchLLM" not in app_swift
    header = (APP / "Runner" / "MegrezRunner.h").read_text()
    impl = (APP / "Runner" / "MegrezRunner.mm").read_text()
    assert "Module::LoadMode::Mmap" in impl and "LoadMode::File" not in impl
    assert "create_multimodal_runner" in impl and "stats_to_json_string" in impl
    # Pieces cross to Swift as bytes: never converted to NSString inside the wrapper.
    assert "NSData" in header and not re.search(r"@\(\s*\w+\.c_str\(\)\s*\)", impl)
    for selector in ("prefillText", "prefillImage", "prefillAudio", "generate", "stop", "reset"):
        assert selector in header and selector in app_swift, selector
    bridging = (APP / "MegrezDemo-Bridging-Header.h").read_text()
    assert '#import "Runner/MegrezRunner.h"' in bridging


# --- the Xcode project ----------------------------------------------------------------------------------------------

XCODEPROJ = IOS / "MegrezDemo.xcodeproj"
PBXPROJ = XCODEPROJ / "project.pbxproj"
OBJECT_ID = re.compile(r"[0-9A-F]{24}")


def _generator():
    spec = importlib.util.spec_from_file_location("gen_xcodeproj", IOS / "gen_xcodeproj.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parse_openstep(text: str):
    """A strict reader of the OpenStep plist dialect of project.pbxproj: dicts, arrays, strings; comments skipped."""
    token = re.compile(r'\s+|/\*.*?\*/|//[^\n]*|"(?:[^"\\]|\\.)*"|[A-Za-z0-9_$./:+-]+|[{}();=,]', re.S)
    tokens = []
    pos = 0
    while pos < len(text):
        m = token.match(text, pos)
        assert m, f"unexpected character at {pos}: {text[pos:pos + 20]!r}"
        t = m.group()
        if not (t.isspace() or t.startswith(("/*", "//"))):
            tokens.append(t)
        pos = m.end()
    escapes = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}

    def value(i):
        t = tokens[i]
        if t == "{":
            out, i = {}, i + 1
            while tokens[i] != "}":
                key, i = value(i)
                assert isinstance(key, str) and tokens[i] == "=", f"bad key at token {i}"
                out[key], i = value(i + 1)
                assert tokens[i] == ";", f"missing ';' after {key}"
                assert key not in list(out)[:-1], f"duplicate key {key}"
                i += 1
            return out, i + 1
        if t == "(":
            out, i = [], i + 1
            while tokens[i] != ")":
                item, i = value(i)
                out.append(item)
                assert tokens[i] in ",)", f"missing ',' at token {i}"
                i += tokens[i] == ","
            return out, i + 1
        assert t not in "{}();=,", f"unexpected {t!r} at token {i}"
        if t.startswith('"'):
            return re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), m.group(1)), t[1:-1]), i + 1
        return t, i + 1

    result, end = value(0)
    assert end == len(tokens), "trailing tokens"
    return result


def _pbxproj() -> dict:
    assert PBXPROJ.read_text().startswith("// !$*UTF8*$!\n")
    return _parse_openstep(PBXPROJ.read_text())


def _ids(value) -> list[str]:
    if isinstance(value, dict):
        return [i for k, v in value.items() for i in _ids(k) + _ids(v)]
    if isinstance(value, list):
        return [i for v in value for i in _ids(v)]
    return [value] if OBJECT_ID.fullmatch(value) else []


def _file_paths(objects: dict, main_group: str) -> dict[str, str]:
    """Each file reference's path relative to ios_demo, through its groups (all `<group>`-relative here)."""
    paths = {}

    def walk(gid, prefix):
        for child in objects[gid]["children"]:
            obj = objects[child]
            path = "/".join(p for p in (prefix, obj.get("path", "")) if p)
            if obj["isa"] == "PBXGroup":
                walk(child, path if obj["sourceTree"] == "<group>" else obj.get("path", ""))
            else:
                paths[child] = path if obj["sourceTree"] == "<group>" else obj["path"]

    walk(main_group, "")
    return paths


def test_committed_xcode_project_is_current(tmp_path):
    """MegrezDemo.xcodeproj is generated (gen_xcodeproj.py, XcodeGen-equivalent) and committed: never stale."""
    generator = _generator()
    assert generator.main(["--out", str(tmp_path)]) == 0
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["MegrezDemo.xcodeproj/project.pbxproj",
                       "MegrezDemo.xcodeproj/project.xcworkspace/contents.xcworkspacedata",
                       "MegrezDemo.xcodeproj/xcshareddata/xcschemes/MegrezDemo.xcscheme"]
    for rel in written:
        assert (IOS / rel).read_bytes() == (tmp_path / rel).read_bytes(), (
            f"ios_demo/{rel} is stale: run `python ios_demo/gen_xcodeproj.py`")
    assert generator.generate() == generator.generate()  # deterministic


def test_pbxproj_parses_with_every_reference_resolved():
    project = _pbxproj()
    assert project["archiveVersion"] == "1" and project["objectVersion"] == "60"  # Xcode 15+
    objects = project["objects"]
    assert all(OBJECT_ID.fullmatch(oid) for oid in objects) and len(objects) > 40
    dangling = {i for obj in objects.values() for i in _ids(obj)} - set(objects)  # in values and nested keys
    assert not dangling, f"dangling object ids: {sorted(dangling)}"
    root = project["rootObject"]
    assert objects[root]["isa"] == "PBXProject" and objects[root]["compatibilityVersion"] == "Xcode 15.0"
    # Every object is reachable from the root object (no orphan left by the generator).
    seen, todo = set(), [root]
    while todo:
        oid = todo.pop()
        if oid not in seen:
            seen.add(oid)
            todo += [i for i in _ids(objects[oid]) if i in objects]
    assert seen == set(objects), f"orphan objects: {sorted(set(objects) - seen)}"
    # The reader is strict: what Xcode would refuse, it refuses.
    for broken in ("{ a = b }", "{ a = (b c); }", "{ a = b; } }", '{ a = "b; }'):
        with pytest.raises(AssertionError):
            _parse_openstep(broken)


def test_pbxproj_compiles_the_sources_and_links_the_packages():
    spec = yaml.safe_load((IOS / "project.yml").read_text())
    objects = _pbxproj()["objects"]
    project = objects[_pbxproj()["rootObject"]]
    (target_id,) = project["targets"]
    target = objects[target_id]
    assert target["name"] == "MegrezDemo" and target["productType"] == "com.apple.product-type.application"
    paths = _file_paths(objects, project["mainGroup"])
    phases = {objects[p]["isa"]: objects[p] for p in target["buildPhases"]}
    assert set(phases) == {"PBXShellScriptBuildPhase", "PBXSourcesBuildPhase", "PBXFrameworksBuildPhase"}

    compiled = sorted(paths[objects[f]["fileRef"]] for f in phases["PBXSourcesBuildPhase"]["files"])
    on_disk = sorted(p.relative_to(IOS).as_posix() for p in APP.rglob("*") if p.suffix in (".swift", ".mm"))
    assert compiled == on_disk and "MegrezDemo/Runner/MegrezRunner.mm" in compiled
    for rel in ("MegrezDemo/Info.plist", "MegrezDemo/MegrezDemo.entitlements",
                "MegrezDemo/MegrezDemo-Bridging-Header.h", "MegrezDemo/Runner/MegrezRunner.h"):
        assert rel in paths.values() and rel not in compiled, rel  # referenced, in no build phase
    assert all((IOS / p).is_file() for oid, p in paths.items() if objects[oid].get("lastKnownFileType") != "folder"
               and objects[oid]["sourceTree"] == "<group>")

    # Packages: ExecuTorch by revision (project.yml's), MegrezCore local; every product depended on and linked.
    references = {objects[r]["isa"]: objects[r] for r in project["packageReferences"]}
    remote = references["XCRemoteSwiftPackageReference"]
    assert remote["repositoryURL"] == spec["packages"]["ExecuTorch"]["url"]
    assert remote["requirement"] == {"kind": "revision", "revision": str(spec["packages"]["ExecuTorch"]["revision"])}
    local = references["XCLocalSwiftPackageReference"]
    assert local["relativePath"] == "MegrezCore" and (IOS / local["relativePath"] / "Package.swift").is_file()
    depended = [(objects[objects[d]["package"]]["isa"], objects[d]["productName"])
                for d in target["packageProductDependencies"]]
    wanted = [("XCLocalSwiftPackageReference" if d["package"] == "MegrezCore" else "XCRemoteSwiftPackageReference",
               d.get("product", d["package"])) for d in spec["targets"]["MegrezDemo"]["dependencies"]]
    assert depended == wanted and sorted(p for _, p in depended if p != "MegrezCore") == sorted(PRODUCTS)
    linked = [objects[f]["productRef"] for f in phases["PBXFrameworksBuildPhase"]["files"]]
    assert linked == target["packageProductDependencies"]


def test_pbxproj_build_settings_are_project_ymls():
    spec = yaml.safe_load((IOS / "project.yml").read_text())
    pbx = _pbxproj()
    objects = pbx["objects"]
    project = objects[pbx["rootObject"]]
    target = objects[project["targets"][0]]

    def configs(owner):
        return {objects[c]["name"]: objects[c]["buildSettings"]
                for c in objects[owner["buildConfigurationList"]]["buildConfigurations"]}

    wanted = {k: [str(x) for x in v] if isinstance(v, list) else str(v)
              for k, v in spec["targets"]["MegrezDemo"]["settings"]["base"].items()}
    for owner in (project, target):
        assert sorted(configs(owner)) == ["Debug", "Release"]
    for name, settings in configs(target).items():
        assert {k: settings[k] for k in wanted} == wanted, name
        assert settings["SDKROOT"] == "iphoneos" and "-all_load" in settings["OTHER_LDFLAGS"]
    for name, settings in configs(project).items():
        assert settings["IPHONEOS_DEPLOYMENT_TARGET"] == spec["options"]["deploymentTarget"]["iOS"]
        assert settings["SDKROOT"] == "iphoneos" and settings["CLANG_ENABLE_OBJC_ARC"] == "YES"
    assert configs(project)["Debug"]["SWIFT_OPTIMIZATION_LEVEL"] == "-Onone"
    assert configs(project)["Release"]["SWIFT_OPTIMIZATION_LEVEL"] == "-O"
    assert project["attributes"]["TargetAttributes"][project["targets"][0]] == {"ProvisioningStyle": "Automatic"}


def test_shared_scheme_runs_the_app():
    import xml.etree.ElementTree as ET

    pbx = _pbxproj()
    target_id = pbx["objects"][pbx["rootObject"]]["targets"][0]
    scheme = ET.parse(XCODEPROJ / "xcshareddata" / "xcschemes" / "MegrezDemo.xcscheme").getroot()
    refs = scheme.findall(".//BuildableReference")
    assert len(refs) == 4 and scheme.find("LaunchAction/BuildableProductRunnable") is not None
    for ref in refs:
        assert ref.get("BlueprintIdentifier") == target_id and ref.get("BuildableName") == "MegrezDemo.app"
        assert ref.get("ReferencedContainer") == "container:MegrezDemo.xcodeproj"
    ET.parse(XCODEPROJ / "project.xcworkspace" / "contents.xcworkspacedata")


def test_generator_refuses_what_it_does_not_implement(tmp_path):
    """gen_xcodeproj.py implements only the spec keys and file kinds project.yml uses: anything else is an error,
    never a silent difference from what XcodeGen would write."""
    import shutil

    generator = _generator()
    shutil.copytree(APP, tmp_path / "MegrezDemo")
    shutil.copytree(CORE / "Sources", tmp_path / "MegrezCore" / "Sources")
    spec = yaml.safe_load((IOS / "project.yml").read_text())
    spec_path = tmp_path / "project.yml"
    spec_path.write_text(yaml.safe_dump(spec))
    assert generator.generate(spec_path) == generator.generate()  # a copy generates the same project
    spec["targets"]["MegrezDemo"]["postBuildScripts"] = [{"script": "true"}]
    spec_path.write_text(yaml.safe_dump(spec))
    with pytest.raises(generator.SpecError, match="postBuildScripts"):
        generator.generate(spec_path)
    del spec["targets"]["MegrezDemo"]["postBuildScripts"]
    pre_build = spec["targets"]["MegrezDemo"]["preBuildScripts"]
    for unimplemented in ({"path": "scripts/fetch_executorch_headers.sh"},  # XcodeGen would inline the file
                          {**pre_build[0], "discoveredDependencyFile": "$(DERIVED_FILE_DIR)/fetch.d"}):
        spec["targets"]["MegrezDemo"]["preBuildScripts"] = [unimplemented]
        spec_path.write_text(yaml.safe_dump(spec))
        with pytest.raises(generator.SpecError, match="path|discoveredDependencyFile"):
            generator.generate(spec_path)
    spec["targets"]["MegrezDemo"]["preBuildScripts"] = pre_build
    spec_path.write_text(yaml.safe_dump(spec))
    (tmp_path / "MegrezDemo" / "Runner" / "fetch.sh").write_text("#!/bin/sh\n")  # XcodeGen would bundle it
    with pytest.raises(generator.SpecError, match="fetch.sh"):
        generator.generate(spec_path)


# --- the ExecuTorch headers fetch (a pre-build script phase) --------------------------------------------------------

FETCH_SCRIPT = IOS / "scripts" / "fetch_executorch_headers.sh"
STAMP = ".megrez-headers-stamp"


def _script_headers() -> list[str]:
    match = re.search(r"^REQUIRED_HEADERS=\(\n(.*?)^\)", FETCH_SCRIPT.read_text(), re.S | re.M)
    assert match, "REQUIRED_HEADERS=( ... ) not found in the fetch script"
    return match.group(1).split()


def test_prebuild_phase_fetches_the_headers_before_sources():
    spec = yaml.safe_load((IOS / "project.yml").read_text())
    pbx = _pbxproj()
    objects = pbx["objects"]
    target = objects[objects[pbx["rootObject"]]["targets"][0]]
    isas = [objects[p]["isa"] for p in target["buildPhases"]]
    assert isas == ["PBXShellScriptBuildPhase", "PBXSourcesBuildPhase", "PBXFrameworksBuildPhase"]
    phase = objects[target["buildPhases"][0]]
    (wanted,) = spec["targets"]["MegrezDemo"]["preBuildScripts"]
    assert phase["name"] == wanted["name"] == "Fetch ExecuTorch headers"
    assert phase["shellPath"] == "/bin/sh" and phase["shellScript"] == wanted["script"]
    assert phase["shellScript"] == 'bash "$SRCROOT/scripts/fetch_executorch_headers.sh"\n'
    assert (IOS / "scripts" / "fetch_executorch_headers.sh").is_file()  # $SRCROOT is ios_demo/
    # Xcode skips the phase while the stamp is newer than the script; the script writes exactly that stamp.
    assert phase["inputPaths"] == ["$(SRCROOT)/scripts/fetch_executorch_headers.sh"]
    assert phase["outputPaths"] == [f"$(EXECUTORCH_SOURCE)/{STAMP}"]
    assert f'STAMP_NAME="{STAMP}"' in FETCH_SCRIPT.read_text()
    assert "alwaysOutOfDate" not in phase and phase["runOnlyForDeploymentPostprocessing"] == "0"
    configs = [objects[c]["buildSettings"] for c in objects[target["buildConfigurationList"]]["buildConfigurations"]]
    for settings in configs:
        assert settings["ENABLE_USER_SCRIPT_SANDBOXING"] == "NO"  # the script writes outside derived sources
        assert settings["EXECUTORCH_SOURCE"] == "$(SRCROOT)/../third_party/executorch"
        assert "$(EXECUTORCH_SOURCE)/.." in settings["HEADER_SEARCH_PATHS"]
        assert "$(EXECUTORCH_SOURCE)/extension/llm/tokenizers/include" in settings["HEADER_SEARCH_PATHS"]
    assert "/third_party/" in (REPO / ".gitignore").read_text().splitlines()


def test_fetch_script_pins_one_tag_and_is_valid_bash():
    import subprocess

    text = FETCH_SCRIPT.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "\nset -euo pipefail\n" in text
    assert re.findall(r"^EXECUTORCH_TAG=.*$", text, re.M) == ['EXECUTORCH_TAG="v1.5.0"']  # one pin, one place
    assert not re.search(r"--branch (?!\"?\$EXECUTORCH_TAG)", text), "every clone uses $EXECUTORCH_TAG"
    # The tag is the release of the Swift package's binaries (project.yml pins swiftpm-1.5.0's head).
    assert SWIFTPM_1_5_HEAD in text and "v1.5.0" in (IOS / "README.md").read_text()
    result = subprocess.run(["bash", "-n", str(FETCH_SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # macOS's /bin/bash is 3.2: nothing newer.
    assert not re.search(r"declare -A|local -A|mapfile|readarray|\$\{\w+(,,|\^\^)", text)


def test_fetch_script_verifies_every_header_the_wrapper_includes():
    impl = (APP / "Runner" / "MegrezRunner.mm").read_text()
    included = re.findall(r"^\s*#\s*include\s*<((?:executorch|pytorch/tokenizers)/[^>]+)>", impl, re.M)
    assert "executorch/extension/llm/runner/multimodal_runner.h" in included
    assert any(h.startswith("executorch/extension/llm/") for h in included)
    listed = _script_headers()
    missing = [h for h in included if h not in listed]
    assert not missing, f"MegrezRunner.mm includes {missing}: add them to REQUIRED_HEADERS in {FETCH_SCRIPT.name}"
    assert "pytorch/tokenizers/tokenizer.h" in listed  # what llm_runner_helper.h and multimodal_runner.h include


def _git_env(tmp_path: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=str(tmp_path), GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull,
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.com",
               # Submodules from local paths are refused by default since git 2.38.1: allow them for the fixture.
               GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="protocol.file.allow", GIT_CONFIG_VALUE_0="always")
    return env


def _fake_executorch(root: Path, env: dict[str, str]) -> str:
    """A local stand-in for ExecuTorch's repository: the listed headers, tag v1.5.0, and the tokenizers as a real
    submodule (its own repository, linked by a gitlink and .gitmodules). Returns its file:// URL."""
    import subprocess

    def git(*args, cwd):
        subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)

    tokenizers, executorch = root / "tokenizers", root / "executorch"
    for repo in (tokenizers, executorch):
        repo.mkdir(parents=True)
        git("init", "-q", cwd=repo)
    for header in _script_headers():
        if header.startswith("pytorch/tokenizers/"):
            path = tokenizers / "include" / header
        else:
            path = executorch / header.removeprefix("executorch/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#pragma once\n")
    (tokenizers / "README").write_text("tokenizers\n")
    git("add", "-A", cwd=tokenizers)
    git("commit", "-qm", "tokenizers", cwd=tokenizers)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tokenizers, env=env, check=True, capture_output=True,
                         text=True).stdout.strip()
    (executorch / ".gitmodules").write_text('[submodule "extension/llm/tokenizers"]\n'
                                            '\tpath = extension/llm/tokenizers\n'
                                            f'\turl = {tokenizers.as_uri()}\n')
    git("add", "-A", cwd=executorch)
    git("update-index", "--add", "--cacheinfo", f"160000,{sha},extension/llm/tokenizers", cwd=executorch)
    git("commit", "-qm", "executorch", cwd=executorch)
    git("tag", "v1.5.0", cwd=executorch)
    return executorch.as_uri()


def _fetch(dest: Path, url: str, env: dict[str, str], path_prefix: str | None = None):
    import subprocess

    env = {**env, "EXECUTORCH_SOURCE": str(dest), "EXECUTORCH_GIT_URL": url}
    if path_prefix:
        env["PATH"] = f"{path_prefix}:{env['PATH']}"
    return subprocess.run(["bash", str(FETCH_SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def test_fetch_script_fetches_once_atomically_and_offline_later(tmp_path):
    """The script's logic, against a local repository (no network): a failed or interrupted fetch leaves no
    destination folder and no temporary one; a complete one holds every header and the stamp; the next run is a
    no-op that needs no network; another tag's checkout is replaced, a checkout it did not write is left alone."""
    import shutil
    import subprocess

    if shutil.which("git") is None or shutil.which("bash") is None:
        pytest.skip("git and bash are needed")
    env = _git_env(tmp_path)
    url = _fake_executorch(tmp_path / "upstream", env)
    third_party = tmp_path / "third_party"
    dest = third_party / "executorch"
    offline = (tmp_path / "nowhere").as_uri()

    def leftovers():
        return sorted(p.name for p in third_party.iterdir()) if third_party.exists() else []

    # Failed: no such repository (as with no network). The message says how to do it by hand; nothing is left.
    failed = _fetch(dest, offline, env)
    assert failed.returncode != 0 and "could not clone ExecuTorch v1.5.0" in failed.stderr
    assert "git clone --depth 1 --branch v1.5.0 https://github.com/pytorch/executorch.git" in failed.stderr
    assert "submodule update --init --depth 1 extension/llm/tokenizers" in failed.stderr
    assert leftovers() == []

    # Interrupted: killed (SIGTERM) while fetching the submodule, after the clone was written.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "git").write_text('#!/bin/sh\nif [ "$3" = submodule ]; then kill -TERM $PPID; exit 1; fi\n'
                                  f'exec "{shutil.which("git")}" "$@"\n')
    (fake_bin / "git").chmod(0o755)
    interrupted = _fetch(dest, url, env, path_prefix=str(fake_bin))
    assert interrupted.returncode == 143 and leftovers() == []

    # A tag without a header the wrapper includes: refused, naming the missing path; nothing is left.
    upstream = tmp_path / "upstream" / "executorch"
    for args in (["rm", "-q", "extension/llm/runner/stats.h"], ["commit", "-qm", "no stats.h"],
                 ["tag", "-f", "v1.5.0"]):
        subprocess.run(["git", *args], cwd=upstream, env=env, check=True, capture_output=True)
    incomplete = _fetch(dest, url, env)
    assert incomplete.returncode != 0
    assert "has no extension/llm/runner/stats.h (#include <executorch/extension/llm/runner/stats.h>" in incomplete.stderr
    assert leftovers() == []
    subprocess.run(["git", "tag", "-f", "v1.5.0", "HEAD~1"], cwd=upstream, env=env, check=True, capture_output=True)

    # Complete (into an empty folder, as a tool might make for the stamp's folder).
    dest.mkdir(parents=True)
    done = _fetch(dest, url, env)
    assert done.returncode == 0, done.stderr
    assert leftovers() == ["executorch"]
    for header in _script_headers():
        relative = (header.removeprefix("executorch/") if header.startswith("executorch/")
                    else f"extension/llm/tokenizers/include/{header}")
        assert (dest / relative).is_file(), relative
    stamp = (dest / STAMP).read_text().splitlines()
    assert stamp[0] == "v1.5.0" and stamp[1].startswith("executorch ") and stamp[2].startswith("tokenizers ")
    assert (dest / ".git" / "shallow").is_file()  # a shallow clone

    # A second run is a no-op: no network needed, the checkout untouched.
    (dest / "marker").write_text("kept")
    again = _fetch(dest, offline, env)
    assert again.returncode == 0, again.stderr
    assert again.stdout == "" and (dest / "marker").read_text() == "kept" and leftovers() == ["executorch"]

    # Our checkout of another tag: replaced by the pinned one, atomically.
    (dest / STAMP).write_text("v1.4.0\n")
    replaced = _fetch(dest, url, env)
    assert replaced.returncode == 0, replaced.stderr
    assert not (dest / "marker").exists() and (dest / STAMP).read_text().startswith("v1.5.0\n")
    assert leftovers() == ["executorch"]

    # A checkout without the stamp (cloned by hand): left alone, with what to do.
    (dest / STAMP).unlink()
    (dest / "marker").write_text("mine")
    refused = _fetch(dest, url, env)
    assert refused.returncode != 0 and "not written by this script" in refused.stderr
    assert f"echo v1.5.0 > \"{dest}/{STAMP}\"" in refused.stderr and (dest / "marker").read_text() == "mine"
