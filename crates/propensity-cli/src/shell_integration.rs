//! How the binary fits into a shell: completion scripts and the man page,
//! both generated from the same clap definition as the parser (so they
//! cannot drift from it), and ending quietly when the reader of stdout
//! goes away (`propensity tail offers | head -1`).

use std::io::{self, Write};

use anyhow::Result;
use clap::CommandFactory;
use clap_complete::Shell;

/// `propensity completions <shell>`: the completion script on stdout.
pub fn completions<C: CommandFactory>(shell: Shell, out: &mut dyn Write) -> Result<()> {
    let mut cmd = C::command();
    let name = cmd.get_name().to_owned();
    clap_complete::generate(shell, &mut cmd, name, out);
    Ok(())
}

/// `propensity man`: the man page of `propensity`, followed by one page
/// per subcommand (`propensity-tail`, `propensity-topics-describe`, …,
/// as `git` names its pages), all on stdout: `propensity man | man -l -`
/// reads them in a row, and packagers split them at each `.TH`.
pub fn man_page<C: CommandFactory>(out: &mut dyn Write) -> Result<()> {
    let cmd = C::command();
    let name = cmd.get_name().to_owned();
    render_pages(&name, &name, &cmd, out)
}

/// `cmd`'s page, named `page` and invoked as `invocation`, then its
/// subcommands' pages.
fn render_pages(
    page: &str,
    invocation: &str,
    cmd: &clap::Command,
    out: &mut dyn Write,
) -> Result<()> {
    let named = cmd
        .clone()
        .display_name(page.to_owned())
        .bin_name(invocation.to_owned());
    clap_mangen::Man::new(named).render(out)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let sub_name = sub.get_name();
        render_pages(
            &format!("{page}-{sub_name}"),
            &format!("{invocation} {sub_name}"),
            sub,
            out,
        )?;
    }
    Ok(())
}

/// Whether an error is a write to a closed pipe. Rust ignores SIGPIPE, so
/// instead of dying silently as C tools do, writes to a pipe whose reader
/// exited fail with `BrokenPipe`; the reader chose to stop (`| head -1`),
/// which is not this command's failure, so `main` exits 0 without a word.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_pipe_anywhere_in_the_chain_is_recognised() {
        let e = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe))
            .context("writing outputs [\"-\"]");
        assert!(is_broken_pipe(&e));
        let other = anyhow::Error::new(io::Error::from(io::ErrorKind::NotFound));
        assert!(!is_broken_pipe(&other));
    }
}
