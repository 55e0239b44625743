//! `ext-runner new`: a project from the embedded templates, and what to run next.

use std::path::PathBuf;

use crate::scaffold::Lang;

/// `ext-runner new`.
#[derive(clap::Args)]
pub struct NewCommand {
    /// Directory to create, and the extension's name: `hello` becomes `com.example.hello`
    /// in manifest.json; a reverse-domain name like `com.acme.hello` is used as it is.
    name: String,
    /// Language of the handler.
    #[arg(long, value_enum)]
    lang: Lang,
    /// Directory to create it in.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// The SDK to depend on (Rust: the ext-sdk crate, crates/sdk; TypeScript: sdk/ts)
    /// [default: the one beside the source this binary was built from].
    #[arg(long)]
    sdk_path: Option<PathBuf>,
}

impl NewCommand {
    /// # Errors
    /// As [`crate::scaffold::new_project`].
    pub fn run(self) -> anyhow::Result<()> {
        let lang = self.lang;
        let args = crate::scaffold::NewArgs {
            name: self.name,
            lang,
            parent: self.dir,
            sdk_path: self.sdk_path,
        };
        let created = crate::scaffold::new_project(&args)?;
        print_created(&created, lang);
        Ok(())
    }
}

/// What `new` made and what to run next.
fn print_created(created: &crate::scaffold::Created, lang: Lang) {
    let dir = created.dir.display();
    let language = match lang {
        Lang::Rust => "Rust",
        Lang::Ts => "TypeScript",
    };
    println!(
        "created {dir}: {} in {language}, SDK {}",
        created.manifest_name,
        created.sdk_path.display()
    );
    for file in &created.files {
        println!("  {file}");
    }
    for note in &created.notes {
        eprintln!("note: {note}");
    }
    println!("\nNext:\n");
    match lang {
        Lang::Rust => println!(
            "  ext-runner dev {dir}          # build, serve on 127.0.0.1:8080, print a curl; rebuilds on save\n  \
             (cd {dir} && cargo test)     # the handler's unit tests"
        ),
        Lang::Ts => println!(
            "  (cd {dir} && npm install && npm test)   # the SDK, TypeScript; the handler's unit tests\n  \
             ext-runner dev {dir}                    # build, serve on 127.0.0.1:8080, print a curl; rebuilds on save"
        ),
    }
}
