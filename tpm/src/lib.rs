//! A small TPM 2.0 client: just the commands Paddock's key store needs,
//! spoken directly over /dev/tpmrm0 (or swtpm's socket in tests), with
//! salted sessions and parameter encryption so that no secret crosses the
//! bus in the clear. Every response is parsed with bounds checks: a broken
//! or hostile TPM yields an error, never a panic.

pub mod kdf;
pub mod policy;
pub mod session;
pub mod swtpm;
pub mod transport;
pub mod wire;

mod client;
#[doc(hidden)]
pub mod exercise;

pub use client::{Auth, EccKey, HmacKey, NvPublic, Tpm, Verified, MAX_HMAC_DATA};
pub use policy::{PcrSelection, PolicyKey, SignedPolicy};
pub use session::{Session, SessionKind};

#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    #[error("TPM transport: {0}")]
    Transport(String),
    #[error("malformed TPM response: {0}")]
    Malformed(String),
    #[error("TPM refused {command}: {}", describe_rc(*.code))]
    Response { command: &'static str, code: u32 },
    #[error("the TPM's answer to {0} fails its integrity check (wrong response HMAC): something between us and the TPM altered it")]
    ResponseHmac(&'static str),
    #[error("ECDH with the TPM's key failed: {0}")]
    Crypto(&'static str),
    /// Refused before anything was sent: the TPM would refuse it too.
    #[error("{command}: {what} is {len} bytes, more than the {max} one command takes")]
    TooLong {
        command: &'static str,
        what: &'static str,
        len: usize,
        max: usize,
    },
}

impl TpmError {
    /// The TPM's response code, when it answered with one.
    pub fn code(&self) -> Option<u32> {
        match self {
            TpmError::Response { code, .. } => Some(*code),
            _ => None,
        }
    }
    /// A policy session's digest did not match the object's policy: for a
    /// PCR policy, the boot state is not the one it was sealed to.
    pub fn is_policy_fail(&self) -> bool {
        self.code()
            .is_some_and(|c| fmt1(c) == Some(rc::POLICY_FAIL))
    }
    /// A value out of range; from PolicyAuthorize: the session's policy
    /// is not the one the signature approved (the PCRs differ from what
    /// was signed).
    pub fn is_value(&self) -> bool {
        self.code().is_some_and(|c| fmt1(c) == Some(rc::VALUE))
    }
    /// A signature the TPM was asked to verify does not.
    pub fn is_bad_signature(&self) -> bool {
        self.code().is_some_and(|c| fmt1(c) == Some(rc::SIGNATURE))
    }
    /// The handle (an NV index) does not exist.
    pub fn is_missing_handle(&self) -> bool {
        self.code().is_some_and(|c| fmt1(c) == Some(rc::HANDLE))
    }
    /// Wrong authorization value (HMAC or password).
    pub fn is_bad_auth(&self) -> bool {
        self.code()
            .is_some_and(|c| matches!(fmt1(c), Some(rc::AUTH_FAIL) | Some(rc::BAD_AUTH)))
    }
    /// The object cannot be used the way it was asked: for one without
    /// userWithAuth, a password or HMAC session instead of its policy.
    pub fn is_auth_unavailable(&self) -> bool {
        self.code() == Some(rc::AUTH_UNAVAILABLE)
    }
    pub fn is_nv_defined(&self) -> bool {
        self.code() == Some(rc::NV_DEFINED)
    }
}

/// Response codes this client acts on (TPM 2.0 Part 2, 6.6).
pub mod rc {
    pub const HANDLE: u32 = 0x08B;
    pub const AUTH_FAIL: u32 = 0x08E;
    pub const SIGNATURE: u32 = 0x09B;
    pub const POLICY_FAIL: u32 = 0x09D;
    pub const BAD_AUTH: u32 = 0x0A2;
    pub const VALUE: u32 = 0x084;
    pub const SIZE: u32 = 0x095;
    pub const INITIALIZE: u32 = 0x100;
    pub const AUTH_UNAVAILABLE: u32 = 0x12F;
    pub const NV_RANGE: u32 = 0x146;
    pub const NV_SIZE: u32 = 0x147;
    pub const NV_LOCKED: u32 = 0x148;
    pub const NV_AUTHORIZATION: u32 = 0x149;
    pub const NV_UNINITIALIZED: u32 = 0x14A;
    pub const NV_SPACE: u32 = 0x14B;
    pub const NV_DEFINED: u32 = 0x14C;
    pub const LOCKOUT: u32 = 0x921;
    pub const RETRY: u32 = 0x922;
}

/// The base of a format-one code (which carries a parameter, handle or
/// session number beside it), or None for a format-zero code.
fn fmt1(code: u32) -> Option<u32> {
    (code & 0x080 != 0).then_some(0x080 | (code & 0x03F))
}

pub fn describe_rc(code: u32) -> String {
    let base = fmt1(code).unwrap_or(code);
    let name = match base {
        rc::HANDLE => "TPM_RC_HANDLE (no such handle)",
        rc::AUTH_FAIL => "TPM_RC_AUTH_FAIL (wrong authorization)",
        rc::SIGNATURE => "TPM_RC_SIGNATURE (the signature does not verify)",
        rc::POLICY_FAIL => "TPM_RC_POLICY_FAIL (policy not satisfied: the boot state differs)",
        rc::BAD_AUTH => "TPM_RC_BAD_AUTH (wrong authorization)",
        rc::VALUE => "TPM_RC_VALUE (a value out of range)",
        rc::SIZE => "TPM_RC_SIZE (a size out of range)",
        rc::INITIALIZE => "TPM_RC_INITIALIZE (the TPM was not started)",
        rc::AUTH_UNAVAILABLE => {
            "TPM_RC_AUTH_UNAVAILABLE (this object can be used only under its policy)"
        }
        rc::NV_RANGE => "TPM_RC_NV_RANGE (outside the NV index)",
        rc::NV_SIZE => "TPM_RC_NV_SIZE",
        rc::NV_LOCKED => "TPM_RC_NV_LOCKED",
        rc::NV_AUTHORIZATION => "TPM_RC_NV_AUTHORIZATION (not allowed on this index)",
        rc::NV_UNINITIALIZED => "TPM_RC_NV_UNINITIALIZED (never written)",
        rc::NV_SPACE => "TPM_RC_NV_SPACE (TPM NV memory full)",
        rc::NV_DEFINED => "TPM_RC_NV_DEFINED (index exists)",
        rc::LOCKOUT => "TPM_RC_LOCKOUT (dictionary-attack lockout)",
        rc::RETRY => "TPM_RC_RETRY",
        _ => "",
    };
    if name.is_empty() {
        format!("response code {code:#05x}")
    } else {
        format!("{name}, code {code:#05x}")
    }
}

/// TPM 2.0 constants this client uses (Part 2).
pub mod consts {
    pub const ST_NO_SESSIONS: u16 = 0x8001;
    pub const ST_SESSIONS: u16 = 0x8002;
    /// TPMT_TK_VERIFIED's tag.
    pub const ST_VERIFIED: u16 = 0x8022;
    pub const RH_OWNER: u32 = 0x4000_0001;
    pub const RH_NULL: u32 = 0x4000_0007;
    pub const RS_PW: u32 = 0x4000_0009;
    pub const ALG_HMAC: u16 = 0x0005;
    pub const ALG_KEYEDHASH: u16 = 0x0008;
    pub const ALG_SHA256: u16 = 0x000B;
    pub const ALG_ECC: u16 = 0x0023;
    pub const ALG_AES: u16 = 0x0006;
    pub const ALG_CFB: u16 = 0x0043;
    pub const ALG_XOR: u16 = 0x000A;
    pub const ALG_NULL: u16 = 0x0010;
    pub const ALG_ECDSA: u16 = 0x0018;
    pub const ECC_NIST_P256: u16 = 0x0003;

    pub const CC_NV_UNDEFINE_SPACE: u32 = 0x122;
    pub const CC_NV_DEFINE_SPACE: u32 = 0x12A;
    pub const CC_CREATE_PRIMARY: u32 = 0x131;
    pub const CC_NV_WRITE: u32 = 0x137;
    pub const CC_NV_READ: u32 = 0x14E;
    pub const CC_HMAC: u32 = 0x155;
    pub const CC_FLUSH_CONTEXT: u32 = 0x165;
    pub const CC_LOAD_EXTERNAL: u32 = 0x167;
    pub const CC_POLICY_AUTHORIZE: u32 = 0x16A;
    pub const CC_NV_READ_PUBLIC: u32 = 0x169;
    pub const CC_READ_PUBLIC: u32 = 0x173;
    pub const CC_START_AUTH_SESSION: u32 = 0x176;
    pub const CC_VERIFY_SIGNATURE: u32 = 0x177;
    pub const CC_GET_RANDOM: u32 = 0x17B;
    pub const CC_PCR_READ: u32 = 0x17E;
    pub const CC_POLICY_PCR: u32 = 0x17F;
    pub const CC_PCR_EXTEND: u32 = 0x182;
    pub const CC_POLICY_GET_DIGEST: u32 = 0x189;

    /// Session attributes.
    pub const SA_CONTINUE: u8 = 0x01;
    pub const SA_DECRYPT: u8 = 0x20;
    pub const SA_ENCRYPT: u8 = 0x40;

    /// NV index attributes (TPMA_NV).
    pub const NV_AUTHWRITE: u32 = 1 << 2;
    pub const NV_POLICYWRITE: u32 = 1 << 3;
    pub const NV_AUTHREAD: u32 = 1 << 18;
    pub const NV_POLICYREAD: u32 = 1 << 19;
    pub const NV_NO_DA: u32 = 1 << 25;
    pub const NV_WRITTEN: u32 = 1 << 29;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_one_codes_match_whatever_number_they_carry() {
        // POLICY_FAIL on session 1: 0x99D.
        let e = TpmError::Response {
            command: "NV_Read",
            code: 0x99D,
        };
        assert!(e.is_policy_fail());
        assert!(!e.is_bad_auth());
        assert!(e.to_string().contains("POLICY_FAIL"));
        let e = TpmError::Response {
            command: "NV_ReadPublic",
            code: 0x18B,
        };
        assert!(e.is_missing_handle());
        let e = TpmError::Response {
            command: "NV_DefineSpace",
            code: rc::NV_DEFINED,
        };
        assert!(e.is_nv_defined());
        assert!(!e.is_missing_handle());
    }
}
