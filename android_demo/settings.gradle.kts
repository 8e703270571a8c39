// The Android demo: `kit` (pure Kotlin, also built and tested with Maven: kit/pom.xml) and `app`.
pluginManagement {
    repositories { google(); mavenCentral(); gradlePluginPortal() }
}
dependencyResolutionManagement {
    repositories { google(); mavenCentral() }
}
rootProject.name = "sapiens-edge-android"
include(":kit", ":app")
