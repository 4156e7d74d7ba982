// Plain Kotlin on the JVM: no Android, no ExecuTorch. CI compiles and tests the same sources with kotlinc
// (tests/test_android_core.py); this build is for Android Studio and `./gradlew :core:test`.
plugins {
    id("org.jetbrains.kotlin.jvm")
}

kotlin { jvmToolchain(17) }

sourceSets {
    // The JVM command-line twin of megrez_mobile.processing.plan (javax.imageio decoding): never in the app.
    create("cli") {
        kotlin.srcDir("src/cli/kotlin")
        compileClasspath += sourceSets["main"].output
        runtimeClasspath += sourceSets["main"].output
    }
    named("test") {
        compileClasspath += sourceSets["cli"].output
        runtimeClasspath += sourceSets["cli"].output
    }
}

dependencies {
    testImplementation(kotlin("test-junit"))
    testImplementation("junit:junit:4.13.2")
}

tasks.test {
    // The Python SDK writes these (python -m megrez_mobile.processing.vectors).
    systemProperty("megrez.vectors", rootProject.file("../tests/vectors/front_end").absolutePath)
}
