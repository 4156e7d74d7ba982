package dev.megrezmobile.core

/**
 * The bundle's manifest.json (megrez_mobile/bundle.py `Manifest`), every field the app reads, typed.
 *
 * Parsing never trusts a file name: each must be a plain name inside the bundle folder (no '/', '\', "..",
 * no leading '.'), so a hostile manifest cannot make the app read or hash a file outside the bundle.
 */
data class FileEntry(val file: String, val bytes: Long, val sha256: String)

data class MethodEntry(val name: String, val backend: String)

data class BundleManifest(
    val schemaVersion: Int,
    val modelId: String,
    val recipeName: String,
    val backend: String,
    val program: FileEntry,
    val tokenizer: FileEntry,
    val methods: List<MethodEntry>,
    val maxContext: Int,
    val maxSeqLen: Int,
    val stopIds: List<Long>,
    val frontEnd: FrontEndConfig,
    val executorchVersion: String,
    /** External weight files (.ptd) the program needs; the Android multimodal runner cannot load them. */
    val dataFiles: List<String>,
    /** program.constants.get_vocab_size, when the exporter wrote it (the benchmark draws token ids below it). */
    val vocabSize: Int? = null,
) {
    val files: List<FileEntry> get() = listOf(program, tokenizer)
    val methodNames: Set<String> get() = methods.map { it.name }.toSet()

    companion object {
        const val SCHEMA_VERSION = 1
        const val FILE_NAME = "manifest.json"

        fun parse(text: String): BundleManifest = try {
            fromJson(JsonObject.parse(text, FILE_NAME))
        } catch (e: FieldError) {
            throw ManifestError(e.field, "${e.problem}; re-export the bundle with megrez-mobile export")
        }

        private fun fromJson(m: JsonObject): BundleManifest {
            val schema = m.int("schema_version")
            if (schema != SCHEMA_VERSION) throw ManifestError(
                "schema_version", "is $schema, this app reads $SCHEMA_VERSION; export the bundle with a " +
                    "megrez-mobile version that writes schema $SCHEMA_VERSION, or update the app")
            val program = m.obj("program")
            val context = m.obj("context")
            val frontEnd = m.obj("front_end")
            val methods = program.objects("methods").map { MethodEntry(it.string("name"), it.string("backend")) }
            val dataFiles = (program.raw["data_files"] as? List<*>).orEmpty().map { it.toString() }
            return BundleManifest(
                schemaVersion = schema,
                modelId = m.string("model_id"),
                recipeName = m.obj("recipe").stringOrNull("name") ?: "?",
                backend = program.string("backend"),
                program = fileEntry(program.obj("file")),
                tokenizer = fileEntry(m.obj("tokenizer")),
                methods = methods,
                maxContext = context.int("max_context"),
                maxSeqLen = context.int("max_seq_len"),
                stopIds = frontEnd.list("stop_ids").mapIndexed { i, v ->
                    v as? Long ?: throw FieldError("front_end.stop_ids[$i]", "must be an integer") },
                frontEnd = FrontEndConfig.fromJson(frontEnd),
                executorchVersion = m.obj("versions").string("executorch"),
                dataFiles = dataFiles.onEach { plainFileName(it, "program.data_files") },
                vocabSize = program.obj("constants").let { if (it.has("get_vocab_size")) it.int("get_vocab_size") else null },
            ).also { it.check() }
        }

        private fun fileEntry(o: JsonObject): FileEntry {
            val sha = o.string("sha256")
            if (!Regex("[0-9a-f]{64}").matches(sha)) throw FieldError("${o.path}.sha256", "must be 64 lowercase hex digits")
            val bytes = o.long("bytes")
            if (bytes < 0) throw FieldError("${o.path}.bytes", "must not be negative")
            return FileEntry(plainFileName(o.string("file"), "${o.path}.file"), bytes, sha)
        }

        /** A file name from the manifest, accepted only when it names a file directly inside the bundle. */
        fun plainFileName(name: String, field: String): String {
            val bad = name.isEmpty() || name.startsWith(".") || name.any { it == '/' || it == '\\' || it.code < 0x20 } ||
                name.length > 255
            if (bad) throw ManifestError(field, "is \"$name\"; bundle files must be plain names inside the bundle " +
                "folder (no folders, no leading '.'): re-export the bundle, do not edit its manifest")
            return name
        }
    }

    private fun check() {
        for (required in listOf("token_embedding", "text_decoder")) {
            if (required !in methodNames) throw ManifestError("program.methods", "has no $required method; this is " +
                "not a Megrez bundle for the multimodal runner: re-export it with megrez-mobile export")
        }
        if (maxSeqLen < 1 || maxContext < maxSeqLen) throw ManifestError("context", "max_seq_len $maxSeqLen and " +
            "max_context $maxContext are inconsistent; re-export the bundle")
    }
}

/** A manifest field is missing or wrong: `field` names it, the message says how to fix it. */
class ManifestError(val field: String, val fix: String) : IllegalArgumentException("manifest.json: $field $fix")
