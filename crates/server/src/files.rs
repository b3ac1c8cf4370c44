//! Files the server makes for itself. A leaf.

/// Creates `dir` and its missing parents readable by the owner only
/// (`0700`, whatever the umask); an existing directory is left as it is.
pub fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}
