import Foundation

/// Typed errors of the kit (Errors.kt), named after src/sapiens_edge/errors.py where a Python twin exists.
/// Every one is a user mistake (a bad file, image or call) and says what to do; bugs stay preconditions.
/// Classes, so `catch let e as ArtifactError` catches every artifact problem as in Kotlin.
open class SapiensEdgeException: Error, LocalizedError, CustomStringConvertible, @unchecked Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var errorDescription: String? { message }
    public var description: String { "\(type(of: self)): \(message)" }
}

/// An artifact folder that cannot be used (Python: ArtifactError).
open class ArtifactError: SapiensEdgeException, @unchecked Sendable {}

/// A manifest that is not valid JSON, lacks a field, or was edited since export.
public final class ManifestError: ArtifactError, @unchecked Sendable {}

/// A manifest schema this kit does not know (Python: ManifestVersionError).
public final class ManifestVersionError: ArtifactError, @unchecked Sendable {}

/// A file the manifest lists (the model file included) is not in the folder.
public final class ModelFileMissingError: ArtifactError, @unchecked Sendable {}

/// A file's sha256 differs from the manifest's.
public final class ChecksumMismatchError: ArtifactError, @unchecked Sendable {}

/// The artifact was exported for another task (or engine) than the one the caller asked for.
public final class WrongTaskError: ArtifactError, @unchecked Sendable {}

/// A model output whose shape contradicts the manifest (a backend or export bug, or a swapped file).
public final class OutputShapeError: ArtifactError, @unchecked Sendable {}

/// An image that is empty or whose pixel array does not match its size (Python: ImageError).
public final class ImageError: SapiensEdgeException, @unchecked Sendable {}

/// A tensor or box array of the wrong shape given to the kit (Python: InputShapeError).
public final class InputShapeError: SapiensEdgeException, @unchecked Sendable {}

/// A backend option or engine this build or device cannot use (Python: OptionError).
public final class OptionError: SapiensEdgeException, @unchecked Sendable {}
