//! `gateway token`: an HS256 user token for the gateway role (trying it,
//! `serve --dev`'s printed token, tests and benchmarks).

use anyhow::bail;

use crate::gateway::users::{self, UserTokenRequest};

/// How long `gateway token` makes a token last unless told: an hour.
const DEFAULT_USER_TOKEN_TTL_SECS: u64 = 3600;
/// Longest `--ttl` accepted: a day (a longer-lived token is a credential
/// someone will keep).
const MAX_USER_TOKEN_TTL_SECS: u64 = 86_400;

/// `ext-runner gateway …`.
#[derive(clap::Subcommand)]
pub enum GatewayCommand {
    /// Print an HS256 user token signed with GATEWAY_JWT_SECRET (from the environment) for
    /// `Authorization: Bearer` on /api/ext/….
    Token(TokenArgs),
}

/// `ext-runner gateway token`.
#[derive(clap::Args)]
pub struct TokenArgs {
    #[arg(long)]
    tenant: String,
    /// The user id (`sub`).
    #[arg(long, default_value = crate::gateway::users::DEV_USER)]
    user: String,
    #[arg(long)]
    email: Option<String>,
    #[arg(long)]
    name: Option<String>,
    /// Seconds the token lasts (at most a day).
    #[arg(long, default_value_t = DEFAULT_USER_TOKEN_TTL_SECS)]
    ttl: u64,
}

impl GatewayCommand {
    /// # Errors
    /// No or a short `GATEWAY_JWT_SECRET`, a bad tenant or TTL; each named.
    pub fn run(self) -> anyhow::Result<()> {
        let GatewayCommand::Token(args) = self;
        if args.ttl == 0 || args.ttl > MAX_USER_TOKEN_TTL_SECS {
            bail!("--ttl: 1-{MAX_USER_TOKEN_TTL_SECS} seconds");
        }
        let Some(secret) = super::environment().remove("GATEWAY_JWT_SECRET") else {
            bail!(
                "GATEWAY_JWT_SECRET is not set (the gateway's HS256 secret; `serve --dev` keeps its own in $RUNNER_DATA_DIR/dev-jwt-secret)"
            );
        };
        let token = users::sign_hs256(
            secret.trim(),
            &UserTokenRequest {
                tenant: &args.tenant,
                user: &args.user,
                email: args.email.as_deref(),
                name: args.name.as_deref(),
                ttl_secs: args.ttl,
            },
        )?;
        println!("{token}");
        Ok(())
    }
}
