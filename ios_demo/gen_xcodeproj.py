#!/usr/bin/env python3
"""Write MegrezDemo.xcodeproj from project.yml, as XcodeGen would (XcodeGen is a Swift tool: it cannot run here).

    python ios_demo/gen_xcodeproj.py            # writes ios_demo/MegrezDemo.xcodeproj (committed)

It reads only the subset of the XcodeGen spec that project.yml uses and refuses anything else, so that the two cannot
drift apart silently. What it writes follows XcodeGen 2.45's rules: the setting presets (base, Debug/Release, iOS,
iOS application), the project's `deploymentTarget`, a group per source folder (files first, then sub-groups), build
phases by file type (Swift / Objective-C++ compiled; headers, entitlements and the INFOPLIST_FILE referenced only),
remote packages as XCRemoteSwiftPackageReference, local ones as XCLocalSwiftPackageReference plus a folder
reference in a "Packages" group, each product an XCSwiftPackageProductDependency linked in the Frameworks phase,
a target's `preBuildScripts` as PBXShellScriptBuildPhases before its Sources phase, and a shared scheme for a target
with `scheme:`. One deliberate difference: a local package's product dependency
also names its XCLocalSwiftPackageReference (`package = ...`), as Xcode 15 itself writes it; XcodeGen leaves it out.

Object ids are the first 24 hex digits of SHA-256 over each object's role (its kind and path), so regenerating
gives a byte-identical project. Standard library + PyYAML only.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import re
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SPEC = HERE / "project.yml"

# XcodeGen's ProjectFormat: objectVersion, compatibilityVersion, preferredProjectObjectVersion.
PROJECT_FORMATS = {
    "xcode14_0": (56, "Xcode 14.0", None),
    "xcode15_0": (60, "Xcode 15.0", None),
    "xcode15_3": (63, "Xcode 15.3", None),
    "xcode16_0": (77, None, 77),
}
DEFAULT_PROJECT_FORMAT = "xcode16_0"  # XcodeGen's default
DEFAULT_XCODE_VERSION = "14.3"  # XcodeGen's default options.xcodeVersion (LastUpgradeCheck)
SCHEME_VERSION = "1.7"

# XcodeGen's SettingPresets (base.yml, Configs/debug.yml, Configs/release.yml, Platforms/iOS.yml,
# Product_Platform/application_iOS.yml).
BASE_PRESET = {
    "ALWAYS_SEARCH_USER_PATHS": "NO",
    "CLANG_ANALYZER_NONNULL": "YES",
    "CLANG_ANALYZER_NUMBER_OBJECT_CONVERSION": "YES_AGGRESSIVE",
    "CLANG_CXX_LANGUAGE_STANDARD": "gnu++14",
    "CLANG_CXX_LIBRARY": "libc++",
    "CLANG_ENABLE_MODULES": "YES",
    "CLANG_ENABLE_OBJC_ARC": "YES",
    "CLANG_ENABLE_OBJC_WEAK": "YES",
    "CLANG_WARN_BLOCK_CAPTURE_AUTORELEASING": "YES",
    "CLANG_WARN_BOOL_CONVERSION": "YES",
    "CLANG_WARN_COMMA": "YES",
    "CLANG_WARN_CONSTANT_CONVERSION": "YES",
    "CLANG_WARN_DEPRECATED_OBJC_IMPLEMENTATIONS": "YES",
    "CLANG_WARN_DIRECT_OBJC_ISA_USAGE": "YES_ERROR",
    "CLANG_WARN_DOCUMENTATION_COMMENTS": "YES",
    "CLANG_WARN_EMPTY_BODY": "YES",
    "CLANG_WARN_ENUM_CONVERSION": "YES",
    "CLANG_WARN_INFINITE_RECURSION": "YES",
    "CLANG_WARN_INT_CONVERSION": "YES",
    "CLANG_WARN_NON_LITERAL_NULL_CONVERSION": "YES",
    "CLANG_WARN_OBJC_IMPLICIT_RETAIN_SELF": "YES",
    "CLANG_WARN_OBJC_LITERAL_CONVERSION": "YES",
    "CLANG_WARN_OBJC_ROOT_CLASS": "YES_ERROR",
    "CLANG_WARN_QUOTED_INCLUDE_IN_FRAMEWORK_HEADER": "YES",
    "CLANG_WARN_RANGE_LOOP_ANALYSIS": "YES",
    "CLANG_WARN_STRICT_PROTOTYPES": "YES",
    "CLANG_WARN_SUSPICIOUS_MOVE": "YES",
    "CLANG_WARN_UNGUARDED_AVAILABILITY": "YES_AGGRESSIVE",
    "CLANG_WARN_UNREACHABLE_CODE": "YES",
    "CLANG_WARN__DUPLICATE_METHOD_MATCH": "YES",
    "COPY_PHASE_STRIP": "NO",
    "ENABLE_STRICT_OBJC_MSGSEND": "YES",
    "GCC_C_LANGUAGE_STANDARD": "gnu11",
    "GCC_NO_COMMON_BLOCKS": "YES",
    "GCC_WARN_64_TO_32_BIT_CONVERSION": "YES",
    "GCC_WARN_ABOUT_RETURN_TYPE": "YES_ERROR",
    "GCC_WARN_UNDECLARED_SELECTOR": "YES",
    "GCC_WARN_UNINITIALIZED_AUTOS": "YES_AGGRESSIVE",
    "GCC_WARN_UNUSED_FUNCTION": "YES",
    "GCC_WARN_UNUSED_VARIABLE": "YES",
    "MTL_FAST_MATH": "YES",
    "PRODUCT_NAME": "$(TARGET_NAME)",
    "SWIFT_VERSION": "5.0",
}
CONFIG_PRESETS = {
    "Debug": {
        "DEBUG_INFORMATION_FORMAT": "dwarf",
        "ENABLE_TESTABILITY": "YES",
        "GCC_DYNAMIC_NO_PIC": "NO",
        "GCC_OPTIMIZATION_LEVEL": "0",
        "GCC_PREPROCESSOR_DEFINITIONS": ["$(inherited)", "DEBUG=1"],
        "MTL_ENABLE_DEBUG_INFO": "INCLUDE_SOURCE",
        "ONLY_ACTIVE_ARCH": "YES",
        "SWIFT_ACTIVE_COMPILATION_CONDITIONS": "DEBUG",
        "SWIFT_OPTIMIZATION_LEVEL": "-Onone",
    },
    "Release": {
        "DEBUG_INFORMATION_FORMAT": "dwarf-with-dsym",
        "ENABLE_NS_ASSERTIONS": "NO",
        "MTL_ENABLE_DEBUG_INFO": "NO",
        "SWIFT_COMPILATION_MODE": "wholemodule",
        "SWIFT_OPTIMIZATION_LEVEL": "-O",
    },
}
CONFIGS = ("Debug", "Release")  # XcodeGen's default configurations
IOS_PLATFORM_PRESET = {
    "LD_RUNPATH_SEARCH_PATHS": ["$(inherited)", "@executable_path/Frameworks"],
    "SDKROOT": "iphoneos",
    "TARGETED_DEVICE_FAMILY": "1,2",
}
IOS_APPLICATION_PRESET = {
    "ASSETCATALOG_COMPILER_APPICON_NAME": "AppIcon",
    "CODE_SIGN_IDENTITY": "iPhone Developer",
}

# Xcode file types of what the app's folder may hold, and XcodeGen's default build phase for each
# ("none": referenced only; headers of an application target get no build phase either).
FILE_TYPES = {
    ".swift": ("sourcecode.swift", "Sources"),
    ".m": ("sourcecode.c.objc", "Sources"),
    ".mm": ("sourcecode.cpp.objcpp", "Sources"),
    ".c": ("sourcecode.c.c", "Sources"),
    ".cpp": ("sourcecode.cpp.cpp", "Sources"),
    ".h": ("sourcecode.c.h", None),
    ".hpp": ("sourcecode.cpp.h", None),
    ".entitlements": ("text.plist.entitlements", None),
    ".plist": ("text.plist", None),  # only the INFOPLIST_FILE is accepted (XcodeGen would copy others)
}
IGNORED_NAMES = {".DS_Store"}


class SpecError(ValueError):
    """project.yml uses something this generator does not implement (use XcodeGen, or extend this file)."""


def _allow(mapping: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise SpecError(f"{where}: unsupported key(s) {unknown}; this generator implements only {sorted(allowed)}")


def object_id(role: str) -> str:
    return hashlib.sha256(role.encode()).hexdigest()[:24].upper()


# --- the OpenStep plist writer (Xcode's pbxproj dialect) ------------------------------------------------------------


class Ref:
    """A reference to another object: written as its id with the object's comment."""

    def __init__(self, oid: str):
        self.oid = oid


def quote(value: str) -> str:
    """Xcode's rule (XcodeProj's CommentedString.validString): bare when only [A-Za-z0-9_$./] and no `//` or `___`."""
    if value == "":
        return '""'
    if all(c.isascii() and (c.isalnum() or c in "_$./") for c in value) and "//" not in value and "___" not in value:
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t").replace("\n", "\\n")
    return f'"{escaped}"'


class PBXWriter:
    SINGLE_LINE = {"PBXBuildFile", "PBXFileReference"}

    def __init__(self, objects: dict[str, dict], comments: dict[str, str | None]):
        self.objects = objects
        self.comments = comments

    def ref(self, oid: str) -> str:
        comment = self.comments.get(oid)
        return f"{oid} /* {comment} */" if comment else oid

    def value(self, v, depth: int, inline: bool) -> str:
        if isinstance(v, Ref):
            if v.oid not in self.objects:
                raise KeyError(f"dangling reference {v.oid}")
            return self.ref(v.oid)
        if isinstance(v, str):
            return quote(v)
        if isinstance(v, bool):
            return "YES" if v else "NO"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, (list, tuple)):
            if inline:
                return "(" + "".join(f"{self.value(x, depth, True)}, " for x in v) + ")"
            pad = "\t" * (depth + 1)
            body = "".join(f"{pad}{self.value(x, depth + 1, False)},\n" for x in v)
            return "(\n" + body + "\t" * depth + ")"
        if isinstance(v, dict):
            return self.mapping(v, depth, inline)
        raise TypeError(f"cannot write {type(v).__name__}: {v!r}")

    @staticmethod
    def keys(d: dict) -> list[str]:
        return (["isa"] if "isa" in d else []) + sorted(k for k in d if k != "isa")

    def mapping(self, d: dict, depth: int, inline: bool) -> str:
        if inline:
            return "{" + "".join(f"{quote(k)} = {self.value(d[k], depth, True)}; " for k in self.keys(d)) + "}"
        pad = "\t" * (depth + 1)
        body = "".join(f"{pad}{quote(k)} = {self.value(d[k], depth + 1, False)};\n" for k in self.keys(d))
        return "{\n" + body + "\t" * depth + "}"

    def write(self, object_version: int, root: str) -> str:
        out = ["// !$*UTF8*$!\n{\n\tarchiveVersion = 1;\n\tclasses = {\n\t};\n",
               f"\tobjectVersion = {object_version};\n\tobjects = {{\n"]
        for isa in sorted({o["isa"] for o in self.objects.values()}):
            out.append(f"\n/* Begin {isa} section */\n")
            for oid in sorted(k for k, o in self.objects.items() if o["isa"] == isa):
                inline = isa in self.SINGLE_LINE
                out.append(f"\t\t{self.ref(oid)} = {self.mapping(self.objects[oid], 2, inline)};\n")
            out.append(f"/* End {isa} section */\n")
        out.append(f"\t}};\n\trootObject = {self.ref(root)};\n}}\n")
        return "".join(out)


# --- the spec -------------------------------------------------------------------------------------------------------


def _setting(value):
    if isinstance(value, bool):
        return "YES" if value else "NO"
    if isinstance(value, (int, float, str)):
        return str(value)
    if isinstance(value, list):
        return [_setting(v) for v in value]
    raise SpecError(f"unsupported setting value {value!r}")


def _settings(block: dict | None, where: str) -> dict[str, dict]:
    """Per-configuration settings of a `settings:` block (`base:` and `configs:`, or a flat mapping)."""
    block = block or {}
    if "base" in block or "configs" in block:
        _allow(block, {"base", "configs"}, where)
        base = block.get("base") or {}
        configs = block.get("configs") or {}
    else:
        base, configs = block, {}
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        raise SpecError(f"{where}: configs {unknown} (only {CONFIGS})")
    return {c: {k: _setting(v) for k, v in {**base, **(configs.get(c) or {})}.items()} for c in CONFIGS}


def _xcode_version(version: str) -> str:
    """XcodeGen's XCodeVersion.parse: "14.3" -> "1430", "15" -> "1500"."""
    parts = str(version).split(".")
    if len(parts) >= 2:
        return parts[0].zfill(2) + parts[1] + (parts[2] if len(parts) > 2 else "0")
    return parts[0].zfill(2) + "00"


def _requirement(package: dict, name: str) -> dict:
    if "revision" in package:
        return {"kind": "revision", "revision": str(package["revision"])}
    if "branch" in package:
        return {"branch": str(package["branch"]), "kind": "branch"}
    if "exactVersion" in package:
        return {"kind": "exactVersion", "version": str(package["exactVersion"])}
    if "majorVersion" in package or "from" in package:
        return {"kind": "upToNextMajorVersion", "minimumVersion": str(package.get("majorVersion", package.get("from")))}
    if "minorVersion" in package:
        return {"kind": "upToNextMinorVersion", "minimumVersion": str(package["minorVersion"])}
    raise SpecError(f"package {name}: no revision, branch or version")


def _natural_key(name: str):
    """Close to Finder's localizedStandardCompare for plain file names: case-insensitive, digits by value."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name.casefold())]


# XcodeGen's BuildScript keys (Sources/ProjectSpec/BuildScript.swift) implemented here; `path` (the script read
# from a file into the project) and `discoveredDependencyFile` are not.
BUILD_SCRIPT_KEYS = {"name", "script", "shell", "inputFiles", "outputFiles", "inputFileLists", "outputFileLists",
                     "runOnlyWhenInstalling", "showEnvVars", "basedOnDependencyAnalysis"}


def _shell_script_phase(script: dict, where: str) -> tuple[str, dict]:
    """(comment, properties) of the PBXShellScriptBuildPhase XcodeGen's generateBuildScript makes of a BuildScript,
    with the keys XcodeProj writes: the file-list arrays always (XcodeGen passes them, empty or not),
    `showEnvVarsInLog` only when false, `alwaysOutOfDate` only when true (basedOnDependencyAnalysis: false)."""
    if not isinstance(script, dict):
        raise SpecError(f"{where}: a mapping with `script:` is implemented")
    _allow(script, BUILD_SCRIPT_KEYS, where)
    if not isinstance(script.get("script"), str):
        raise SpecError(f"{where}: `script:` (the script's text) is required; `path:` is not implemented")

    def paths(key: str) -> list[str]:
        value = script.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SpecError(f"{where}.{key}: a list of paths")
        return list(value)

    def flag(key: str, default: bool) -> bool:
        value = script.get(key, default)
        if not isinstance(value, bool):
            raise SpecError(f"{where}.{key}: true or false")
        return value

    name = str(script.get("name") or "Run Script")
    props = dict(isa="PBXShellScriptBuildPhase", buildActionMask=2147483647, files=[],
                 inputFileListPaths=paths("inputFileLists"), inputPaths=paths("inputFiles"), name=name,
                 outputFileListPaths=paths("outputFileLists"), outputPaths=paths("outputFiles"),
                 runOnlyForDeploymentPostprocessing=int(flag("runOnlyWhenInstalling", False)),
                 shellPath=str(script.get("shell") or "/bin/sh"), shellScript=script["script"])
    if not flag("showEnvVars", True):
        props["showEnvVarsInLog"] = 0
    if not flag("basedOnDependencyAnalysis", True):
        props["alwaysOutOfDate"] = 1
    return name, props


# --- the project ----------------------------------------------------------------------------------------------------


def generate(spec_path: Path = SPEC) -> dict[str, bytes]:
    """The project's files, by path relative to the spec's folder."""
    base_dir = spec_path.parent
    spec = yaml.safe_load(spec_path.read_text())
    _allow(spec, {"name", "options", "packages", "targets"}, "project.yml")
    name = spec["name"]
    options = spec.get("options") or {}
    _allow(options, {"bundleIdPrefix", "deploymentTarget", "projectFormat", "xcodeVersion"}, "options")
    deployment = options.get("deploymentTarget") or {}
    _allow(deployment, {"iOS"}, "options.deploymentTarget")
    project_format = options.get("projectFormat", DEFAULT_PROJECT_FORMAT)
    if project_format not in PROJECT_FORMATS:
        raise SpecError(f"options.projectFormat {project_format!r}: one of {sorted(PROJECT_FORMATS)}")
    object_version, compatibility, preferred = PROJECT_FORMATS[project_format]
    xcode_version = _xcode_version(options.get("xcodeVersion", DEFAULT_XCODE_VERSION))

    targets = spec.get("targets") or {}
    if len(targets) != 1:
        raise SpecError("exactly one target is implemented")
    (target_name, target), = targets.items()
    _allow(target, {"type", "platform", "sources", "dependencies", "settings", "scheme", "preBuildScripts"},
           f"targets.{target_name}")
    if target.get("type") != "application" or target.get("platform") != "iOS":
        raise SpecError("only an iOS application target is implemented")

    objects: dict[str, dict] = {}
    comments: dict[str, str | None] = {}

    def add(role: str, comment: str | None, **props) -> str:
        oid = object_id(f"{name}:{role}")
        if oid in objects:
            raise RuntimeError(f"duplicate object role or id collision: {role}")
        objects[oid] = props
        comments[oid] = comment
        return oid

    # Settings: the project's (presets, deploymentTarget) and the target's (platform presets, then the spec's).
    project_settings = _settings(None, "settings")
    target_settings = _settings(target.get("settings"), f"targets.{target_name}.settings")
    configs = {}
    for config in CONFIGS:
        proj = {"SDKROOT": "iphoneos", **BASE_PRESET, **CONFIG_PRESETS[config]}
        if "iOS" in deployment:
            proj["IPHONEOS_DEPLOYMENT_TARGET"] = str(deployment["iOS"])
        proj.update(project_settings[config])
        tgt = {**IOS_PLATFORM_PRESET, **IOS_APPLICATION_PRESET, **target_settings[config]}
        if "bundleIdPrefix" in options and "PRODUCT_BUNDLE_IDENTIFIER" not in tgt:
            tgt["PRODUCT_BUNDLE_IDENTIFIER"] = f"{options['bundleIdPrefix']}.{target_name.replace('_', '-')}"
        configs[config] = (proj, tgt)

    def config_list(owner: str, comment: str, per_config: dict[str, dict]) -> str:
        ids = [add(f"config:{owner}:{c}", c, isa="XCBuildConfiguration", buildSettings=per_config[c], name=c)
               for c in CONFIGS]
        return add(f"configlist:{owner}", f"Build configuration list for {comment}", isa="XCConfigurationList",
                   buildConfigurations=[Ref(i) for i in ids], defaultConfigurationIsVisible=0,
                   defaultConfigurationName=CONFIGS[0])

    # Sources: a group per folder, files first then sub-groups (XcodeGen's default groupSortPosition: bottom).
    info_plists = {tgt.get("INFOPLIST_FILE") for _, tgt in configs.values()} - {None}
    sources_phase_files: list[str] = []
    top_groups: list[tuple[str, str]] = []

    def walk_folder(folder: Path, rel: str, excludes: list[str], source_root: str) -> str:
        files, subgroups = [], []
        for entry in sorted(folder.iterdir(), key=lambda p: _natural_key(p.name)):
            entry_rel = f"{rel}/{entry.name}"
            inside = entry_rel[len(source_root) + 1:]
            if entry.name in IGNORED_NAMES or entry.name.startswith(".") or any(
                    fnmatch.fnmatchcase(inside, pattern) for pattern in excludes):
                continue
            if entry.is_dir():
                subgroups.append(walk_folder(entry, entry_rel, excludes, source_root))
                continue
            if entry.suffix not in FILE_TYPES:
                raise SpecError(f"{entry_rel}: no build rule for {entry.suffix or 'no extension'} files here "
                                "(XcodeGen would copy it as a resource): exclude it or extend FILE_TYPES")
            file_type, phase = FILE_TYPES[entry.suffix]
            if entry_rel in info_plists:
                phase = None
            elif entry.suffix == ".plist":
                raise SpecError(f"{entry_rel}: a .plist that is not INFOPLIST_FILE would be a resource")
            ref = add(f"file:{entry_rel}", entry.name, isa="PBXFileReference", lastKnownFileType=file_type,
                      path=entry.name, sourceTree="<group>")
            files.append(ref)
            if phase == "Sources":
                sources_phase_files.append(add(f"buildfile:Sources:{entry_rel}", f"{entry.name} in Sources",
                                               isa="PBXBuildFile", fileRef=Ref(ref)))
        return add(f"group:{rel}", folder.name, isa="PBXGroup", children=[Ref(i) for i in files + subgroups],
                   path=folder.name, sourceTree="<group>")

    for source in target.get("sources") or []:
        source = {"path": source} if isinstance(source, str) else source
        _allow(source, {"path", "excludes"}, "sources")
        rel = str(source["path"]).strip("/")
        if "/" in rel or not (base_dir / rel).is_dir():
            raise SpecError(f"sources: {rel!r} must be a folder next to project.yml")
        top_groups.append((rel, walk_folder(base_dir / rel, rel, list(source.get("excludes") or []), rel)))

    # Packages: remote references, local references (+ a folder reference in the "Packages" group).
    remote: dict[str, str] = {}
    local: dict[str, str] = {}
    local_files: list[str] = []
    for pkg_name, package in sorted((spec.get("packages") or {}).items()):
        if "path" in package:
            _allow(package, {"path"}, f"packages.{pkg_name}")
            path = str(package["path"])
            local[pkg_name] = add(f"localpackage:{pkg_name}", f'XCLocalSwiftPackageReference "{path}"',
                                  isa="XCLocalSwiftPackageReference", relativePath=path)
            local_files.append(add(f"localpackagefolder:{pkg_name}", Path(path).name, isa="PBXFileReference",
                                   lastKnownFileType="folder", name=Path(path).name, path=path,
                                   sourceTree="SOURCE_ROOT"))
        else:
            _allow(package, {"url", "revision", "branch", "exactVersion", "majorVersion", "minorVersion", "from"},
                   f"packages.{pkg_name}")
            url = str(package["url"])
            repo = url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
            remote[pkg_name] = add(f"remotepackage:{pkg_name}", f'XCRemoteSwiftPackageReference "{repo}"',
                                   isa="XCRemoteSwiftPackageReference", repositoryURL=url,
                                   requirement=_requirement(package, pkg_name))

    product_deps: list[str] = []
    framework_files: list[str] = []
    for dependency in target.get("dependencies") or []:
        _allow(dependency, {"package", "product", "products"}, "dependencies")
        pkg_name = dependency.get("package")
        if pkg_name not in remote and pkg_name not in local:
            raise SpecError(f"dependency on an undeclared package {pkg_name!r}")
        products = dependency.get("products") or [dependency.get("product") or pkg_name]
        for product in products:
            package_ref = remote.get(pkg_name) or local[pkg_name]
            dep = add(f"productdependency:{target_name}:{pkg_name}/{product}", product,
                      isa="XCSwiftPackageProductDependency", package=Ref(package_ref), productName=product)
            product_deps.append(dep)
            framework_files.append(add(f"buildfile:Frameworks:{pkg_name}/{product}", f"{product} in Frameworks",
                                       isa="PBXBuildFile", productRef=Ref(dep)))

    # Target, products, groups, project.
    product_file = f"{target_name}.app"
    product = add(f"product:{product_file}", product_file, isa="PBXFileReference", includeInIndex=0,
                  lastKnownFileType="wrapper.application", path=product_file, sourceTree="BUILT_PRODUCTS_DIR")
    sources_phase = add(f"phase:{target_name}:Sources", "Sources", isa="PBXSourcesBuildPhase",
                        buildActionMask=2147483647, files=[Ref(i) for i in sources_phase_files],
                        runOnlyForDeploymentPostprocessing=0)
    frameworks_phase = add(f"phase:{target_name}:Frameworks", "Frameworks", isa="PBXFrameworksBuildPhase",
                           buildActionMask=2147483647, files=[Ref(i) for i in framework_files],
                           runOnlyForDeploymentPostprocessing=0)
    # XcodeGen puts the preBuildScripts first, before the (here absent) headers and resources phases and Sources.
    pre_build_phases = []
    for index, script in enumerate(target.get("preBuildScripts") or []):
        comment, props = _shell_script_phase(script, f"targets.{target_name}.preBuildScripts[{index}]")
        pre_build_phases.append(add(f"phase:{target_name}:preBuildScript:{index}", comment, **props))
    target_id = add(
        f"target:{target_name}", target_name, isa="PBXNativeTarget",
        buildConfigurationList=Ref(config_list(f"target:{target_name}", f'PBXNativeTarget "{target_name}"',
                                               {c: configs[c][1] for c in CONFIGS})),
        buildPhases=[Ref(i) for i in pre_build_phases] + [Ref(sources_phase), Ref(frameworks_phase)],
        buildRules=[], dependencies=[], name=target_name,
        packageProductDependencies=[Ref(i) for i in product_deps], productName=target_name,
        productReference=Ref(product), productType="com.apple.product-type.application")

    products_group = add("group:<Products>", "Products", isa="PBXGroup", children=[Ref(product)], name="Products",
                         sourceTree="<group>")
    main_children = [(rel, gid) for rel, gid in top_groups]
    if local_files:
        packages_group = add("group:<Packages>", "Packages", isa="PBXGroup", children=[Ref(i) for i in local_files],
                             name="Packages", sourceTree="<group>")
        main_children.append(("Packages", packages_group))
    main_children.sort(key=lambda item: _natural_key(item[0]))
    main_group = add("group:<main>", None, isa="PBXGroup",
                     children=[Ref(gid) for _, gid in main_children] + [Ref(products_group)], sourceTree="<group>")

    attributes = {"BuildIndependentTargetsInParallel": "YES", "LastUpgradeCheck": xcode_version}
    styles = {configs[c][1].get("CODE_SIGN_STYLE") for c in CONFIGS}
    target_attributes = {}
    if len(styles) == 1 and None not in styles:
        target_attributes["ProvisioningStyle"] = styles.pop()
    attributes["TargetAttributes"] = {target_id: target_attributes} if target_attributes else {}
    project_props = dict(
        isa="PBXProject", attributes=attributes,
        buildConfigurationList=Ref(config_list("project", f'PBXProject "{name}"',
                                               {c: configs[c][0] for c in CONFIGS})),
        developmentRegion="en", hasScannedForEncodings=0, knownRegions=["Base", "en"], mainGroup=Ref(main_group),
        minimizedProjectReferenceProxies=1,
        packageReferences=[Ref(remote[k]) for k in sorted(remote)] + [Ref(local[k]) for k in sorted(local)],
        productRefGroup=Ref(products_group), projectDirPath="", projectRoot="", targets=[Ref(target_id)])
    if compatibility:
        project_props["compatibilityVersion"] = compatibility
    if preferred:
        project_props["preferredProjectObjectVersion"] = preferred
    root = add("project", "Project object", **project_props)

    project_dir = f"{name}.xcodeproj"
    files = {
        f"{project_dir}/project.pbxproj": PBXWriter(objects, comments).write(object_version, root).encode(),
        f"{project_dir}/project.xcworkspace/contents.xcworkspacedata": WORKSPACE.encode(),
    }
    if "scheme" in target:
        if target["scheme"]:
            raise SpecError("only `scheme: {}` (XcodeGen's default target scheme) is implemented")
        files[f"{project_dir}/xcshareddata/xcschemes/{target_name}.xcscheme"] = _scheme(
            xcode_version, target_id, product_file, target_name, project_dir).encode()
    return files


WORKSPACE = """<?xml version="1.0" encoding="UTF-8"?>
<Workspace
   version = "1.0">
   <FileRef
      location = "self:">
   </FileRef>
</Workspace>
"""


def _scheme(xcode_version: str, target_id: str, product: str, target: str, container: str) -> str:
    ref = lambda pad: (  # noqa: E731
        f'{pad}<BuildableReference\n'
        f'{pad}   BuildableIdentifier = "primary"\n'
        f'{pad}   BlueprintIdentifier = "{target_id}"\n'
        f'{pad}   BuildableName = "{product}"\n'
        f'{pad}   BlueprintName = "{target}"\n'
        f'{pad}   ReferencedContainer = "container:{container}">\n'
        f'{pad}</BuildableReference>\n')
    runnable = ('      <BuildableProductRunnable\n         runnableDebuggingMode = "0">\n'
                + ref("         ") + '      </BuildableProductRunnable>\n')
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<Scheme\n   LastUpgradeVersion = "{xcode_version}"\n   version = "{SCHEME_VERSION}">\n'
        '   <BuildAction\n      parallelizeBuildables = "YES"\n      buildImplicitDependencies = "YES"\n'
        '      runPostActionsOnFailure = "NO">\n      <BuildActionEntries>\n         <BuildActionEntry\n'
        '            buildForTesting = "YES"\n            buildForRunning = "YES"\n'
        '            buildForProfiling = "YES"\n            buildForArchiving = "YES"\n'
        '            buildForAnalyzing = "YES">\n'
        + ref("            ")
        + '         </BuildActionEntry>\n      </BuildActionEntries>\n   </BuildAction>\n'
        '   <TestAction\n      buildConfiguration = "Debug"\n'
        '      selectedDebuggerIdentifier = "Xcode.DebuggerFoundation.Debugger.LLDB"\n'
        '      selectedLauncherIdentifier = "Xcode.DebuggerFoundation.Launcher.LLDB"\n'
        '      shouldUseLaunchSchemeArgsEnv = "YES"\n      onlyGenerateCoverageForSpecifiedTargets = "NO">\n'
        '      <MacroExpansion>\n' + ref("         ") + '      </MacroExpansion>\n'
        '      <Testables>\n      </Testables>\n      <CommandLineArguments>\n      </CommandLineArguments>\n'
        '   </TestAction>\n'
        '   <LaunchAction\n      buildConfiguration = "Debug"\n'
        '      selectedDebuggerIdentifier = "Xcode.DebuggerFoundation.Debugger.LLDB"\n'
        '      selectedLauncherIdentifier = "Xcode.DebuggerFoundation.Launcher.LLDB"\n'
        '      launchStyle = "0"\n      useCustomWorkingDirectory = "NO"\n'
        '      ignoresPersistentStateOnLaunch = "NO"\n      debugDocumentVersioning = "YES"\n'
        '      debugServiceExtension = "internal"\n      allowLocationSimulation = "YES">\n'
        + runnable + '      <CommandLineArguments>\n      </CommandLineArguments>\n   </LaunchAction>\n'
        '   <ProfileAction\n      buildConfiguration = "Release"\n      shouldUseLaunchSchemeArgsEnv = "YES"\n'
        '      savedToolIdentifier = ""\n      useCustomWorkingDirectory = "NO"\n'
        '      debugDocumentVersioning = "YES">\n'
        + runnable + '      <CommandLineArguments>\n      </CommandLineArguments>\n   </ProfileAction>\n'
        '   <AnalyzeAction\n      buildConfiguration = "Debug">\n   </AnalyzeAction>\n'
        '   <ArchiveAction\n      buildConfiguration = "Release"\n      revealArchiveInOrganizer = "YES">\n'
        '   </ArchiveAction>\n</Scheme>\n')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, default=SPEC, help="the XcodeGen spec (default: %(default)s)")
    parser.add_argument("--out", type=Path, help="folder to write into (default: the spec's folder)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when the committed files differ")
    args = parser.parse_args(argv)
    out = args.out or args.spec.parent
    stale = []
    for rel, data in generate(args.spec).items():
        path = out / rel
        if args.check:
            if not path.is_file() or path.read_bytes() != data:
                stale.append(rel)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print(f"wrote {path}")
    if stale:
        print("stale (run python ios_demo/gen_xcodeproj.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
