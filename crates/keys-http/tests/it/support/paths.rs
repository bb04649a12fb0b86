//! Concrete request paths for the route table's templates.

/// A path of `pattern` with every parameter replaced by `x`: a plausible
/// value that names nothing, so a route is reached and its resource is not.
pub fn concrete(pattern: &str) -> String {
    pattern.split('/').map(|segment| if segment.starts_with('{') { "x" } else { segment }).collect::<Vec<_>>().join("/")
}
