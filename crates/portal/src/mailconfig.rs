//! One-click mail-client set-up for the submission server: Thunderbird autoconfig
//! (`config-v1.1.xml`), Outlook autodiscover (POX), and an Apple configuration
//! profile. The public documents (autoconfig, autodiscover) are fetched by clients
//! without a login, so they never reveal a subscriber's login: the client asks the
//! user for it. The Apple profile is made for the logged-in customer and carries
//! their login (never the password).

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde::Deserialize;

use crate::error::PortalError;
use crate::html::esc;
use crate::security::CustomerSession;
use crate::Shared;

#[derive(Deserialize, Default)]
pub(crate) struct AutoconfigQuery {
    emailaddress: Option<String>,
}

fn domain_of(email: &str) -> Option<&str> {
    email
        .rsplit_once('@')
        .map(|(_, d)| d)
        .filter(|d| !d.is_empty() && d.len() <= 253)
}

/// `GET /.well-known/autoconfig/mail/config-v1.1.xml` and `/mail/config-v1.1.xml`.
pub(crate) async fn autoconfig(
    State(state): State<Shared>,
    Query(q): Query<AutoconfigQuery>,
) -> impl IntoResponse {
    let sub = &state.config.submission;
    let host = esc(sub.public_hostname());
    let domain = q
        .emailaddress
        .as_deref()
        .and_then(domain_of)
        .map(esc)
        .unwrap_or_else(|| host.clone());
    let xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="{host}">
    <domain>{domain}</domain>
    <displayName>Mail through your internet provider</displayName>
    <displayShortName>ISP mail</displayShortName>
    <outgoingServer type="smtp">
      <hostname>{host}</hostname>
      <port>{tls}</port>
      <socketType>SSL</socketType>
      <authentication>password-cleartext</authentication>
      <username>%EMAILLOCALPART%</username>
    </outgoingServer>
    <outgoingServer type="smtp">
      <hostname>{host}</hostname>
      <port>{starttls}</port>
      <socketType>STARTTLS</socketType>
      <authentication>password-cleartext</authentication>
      <username>%EMAILLOCALPART%</username>
    </outgoingServer>
    <documentation url="/sending">
      <descr lang="en">Log in with the login and password of your internet connection (not your email address).</descr>
    </documentation>
  </emailProvider>
</clientConfig>
"#,
        tls = sub.public_tls_port,
        starttls = sub.public_starttls_port,
    );
    (
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        xml,
    )
}

/// `POST /autodiscover/autodiscover.xml`: the Outlook POX answer for SMTP.
pub(crate) async fn autodiscover(
    State(state): State<Shared>,
    body: Bytes,
) -> Result<impl IntoResponse, PortalError> {
    if body.len() > 64 * 1024 {
        return Err(PortalError::BadRequest(
            "autodiscover request too large".into(),
        ));
    }
    let text = String::from_utf8_lossy(&body);
    let email = text
        .split_once("<EMailAddress>")
        .and_then(|(_, rest)| rest.split_once("</EMailAddress>"))
        .map(|(e, _)| e.trim().to_string())
        .unwrap_or_default();
    let sub = &state.config.submission;
    let xml = format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">
  <Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">
    <User><DisplayName>{email}</DisplayName></User>
    <Account>
      <AccountType>email</AccountType>
      <Action>settings</Action>
      <Protocol>
        <Type>SMTP</Type>
        <Server>{host}</Server>
        <Port>{tls}</Port>
        <SSL>on</SSL>
        <Encryption>SSL</Encryption>
        <SPA>off</SPA>
        <AuthRequired>on</AuthRequired>
      </Protocol>
    </Account>
  </Response>
</Autodiscover>
"#,
        email = esc(&email),
        host = esc(sub.public_hostname()),
        tls = sub.public_tls_port,
    );
    Ok((
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        xml,
    ))
}

/// A stable UUID-shaped identifier derived from `seed` (profiles are replaced, not
/// duplicated, when installed again).
fn uuid_from(seed: &str) -> String {
    let h = crate::security::hash_token(seed);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
    .to_uppercase()
}

/// `GET /sending/portcullis.mobileconfig`: an Apple profile for the logged-in customer.
pub(crate) async fn mobileconfig(
    State(state): State<Shared>,
    s: CustomerSession,
) -> Result<impl IntoResponse, PortalError> {
    let sub = state.store.subscriber(&s.login).await?;
    let c = &state.config.submission;
    let host = esc(c.public_hostname());
    let email = esc(sub.email.as_deref().unwrap_or(&s.login));
    let login = esc(&s.login);
    // Apple's mail payload needs an incoming server; the ISP's portal does not know
    // the customer's mailbox, so the submission host stands in and the user edits it.
    let xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>PayloadContent</key>
  <array>
    <dict>
      <key>EmailAccountDescription</key><string>Mail via {host}</string>
      <key>EmailAccountType</key><string>EmailTypeIMAP</string>
      <key>EmailAddress</key><string>{email}</string>
      <key>IncomingMailServerAuthentication</key><string>EmailAuthPassword</string>
      <key>IncomingMailServerHostName</key><string>{host}</string>
      <key>IncomingMailServerPortNumber</key><integer>993</integer>
      <key>IncomingMailServerUseSSL</key><true/>
      <key>IncomingMailServerUsername</key><string>{login}</string>
      <key>OutgoingMailServerAuthentication</key><string>EmailAuthPassword</string>
      <key>OutgoingMailServerHostName</key><string>{host}</string>
      <key>OutgoingMailServerPortNumber</key><integer>{tls}</integer>
      <key>OutgoingMailServerUseSSL</key><true/>
      <key>OutgoingMailServerUsername</key><string>{login}</string>
      <key>OutgoingPasswordSameAsIncomingPassword</key><true/>
      <key>PayloadDisplayName</key><string>Outgoing mail</string>
      <key>PayloadIdentifier</key><string>portcullis.mail.{login}</string>
      <key>PayloadType</key><string>com.apple.mail.managed</string>
      <key>PayloadUUID</key><string>{uuid1}</string>
      <key>PayloadVersion</key><integer>1</integer>
    </dict>
  </array>
  <key>PayloadDisplayName</key><string>Sending mail via {host}</string>
  <key>PayloadIdentifier</key><string>portcullis.profile.{login}</string>
  <key>PayloadType</key><string>Configuration</string>
  <key>PayloadUUID</key><string>{uuid2}</string>
  <key>PayloadVersion</key><integer>1</integer>
</dict>
</plist>
"#,
        tls = c.public_tls_port,
        uuid1 = uuid_from(&format!("mail:{}", s.login)),
        uuid2 = uuid_from(&format!("profile:{}", s.login)),
    );
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "application/x-apple-aspen-config".to_string(),
            ),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"portcullis-mail.mobileconfig\"".to_string(),
            ),
        ],
        xml,
    ))
}
