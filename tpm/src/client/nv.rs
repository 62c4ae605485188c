//! NV storage: an index's public area read and checked, defined,
//! undefined, written and read, each under the session the caller holds.

use super::*;

/// An NV index's public area, as the TPM reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NvPublic {
    pub index: u32,
    pub attributes: u32,
    pub auth_policy: Vec<u8>,
    pub size: u16,
    pub name: Vec<u8>,
}

fn nv_public_body(index: u32, attributes: u32, auth_policy: &[u8], size: u16) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(index)
        .u16(ALG_SHA256)
        .u32(attributes)
        .tpm2b(auth_policy)
        .u16(size);
    w.into_vec()
}

impl Tpm {
    /// An NV index's public area and name; the name is checked against the
    /// area, so a later HMAC over it binds what we read.
    pub fn nv_read_public(&mut self, index: u32) -> Result<NvPublic, TpmError> {
        let h = index.to_be_bytes();
        let cmd = Command {
            name: "NV_ReadPublic",
            code: CC_NV_READ_PUBLIC,
            handles: &[index],
            names: &[&h],
            params: Vec::new(),
            response_handles: 0,
        };
        let (_, out) = self.execute(cmd, &mut [])?;
        let mut r = Reader::new(&out, "NV_ReadPublic");
        let body = r.tpm2b()?;
        let name = r.tpm2b_max(34)?.to_vec();
        r.finish()?;
        let mut p = Reader::new(body, "NV public area");
        let got_index = p.u32()?;
        let name_alg = p.u16()?;
        let attributes = p.u32()?;
        let auth_policy = p.tpm2b_max(64)?.to_vec();
        let size = p.u16()?;
        p.finish()?;
        if got_index != index || name_alg != ALG_SHA256 || name != name_of(body) {
            return Err(TpmError::Malformed(format!(
                "NV_ReadPublic for {index:#x} describes index {got_index:#x} (name algorithm {name_alg:#x}) or a name that is not its own"
            )));
        }
        Ok(NvPublic {
            index,
            attributes,
            auth_policy,
            size,
            name,
        })
    }

    /// Defines an NV index, authorized by the owner hierarchy (empty owner
    /// auth) through `session`, a salted HMAC session, which also encrypts
    /// the new index's auth value on its way in.
    pub fn nv_define(
        &mut self,
        session: &mut Session,
        index: u32,
        attributes: u32,
        auth_value: &[u8],
        auth_policy: &[u8],
        size: u16,
    ) -> Result<(), TpmError> {
        let mut w = Writer::new();
        w.tpm2b(auth_value)
            .tpm2b(&nv_public_body(index, attributes, auth_policy, size));
        let owner = RH_OWNER.to_be_bytes();
        let cmd = Command {
            name: "NV_DefineSpace",
            code: CC_NV_DEFINE_SPACE,
            handles: &[RH_OWNER],
            names: &[&owner],
            params: w.into_vec(),
            response_handles: 0,
        };
        self.execute(
            cmd,
            &mut [Auth::Session {
                session,
                auth_value: &[],
                attrs: SA_CONTINUE | SA_DECRYPT,
            }],
        )?;
        Ok(())
    }

    /// Deletes an NV index (owner authorization, as for define).
    pub fn nv_undefine(&mut self, session: &mut Session, index: u32) -> Result<(), TpmError> {
        let public = self.nv_read_public(index)?;
        let owner = RH_OWNER.to_be_bytes();
        let cmd = Command {
            name: "NV_UndefineSpace",
            code: CC_NV_UNDEFINE_SPACE,
            handles: &[RH_OWNER, index],
            names: &[&owner, &public.name],
            params: Vec::new(),
            response_handles: 0,
        };
        self.execute(
            cmd,
            &mut [Auth::Session {
                session,
                auth_value: &[],
                attrs: SA_CONTINUE,
            }],
        )?;
        Ok(())
    }

    /// A command on an index that authorizes itself (its handle twice:
    /// as the authorization and as the index), named as the TPM reports
    /// it now (the name changes once the index is first written).
    fn nv_command(
        &mut self,
        name: &'static str,
        code: u32,
        index: u32,
        params: Vec<u8>,
        auths: &mut [Auth],
    ) -> Result<Vec<u8>, TpmError> {
        let public = self.nv_read_public(index)?;
        let cmd = Command {
            name,
            code,
            handles: &[index, index],
            names: &[&public.name, &public.name],
            params,
            response_handles: 0,
        };
        Ok(self.execute(cmd, auths)?.1)
    }

    /// Writes `data` at offset 0 of an index that authorizes itself
    /// (AUTHWRITE or POLICYWRITE); `auths` is that authorization, then
    /// optionally a session that encrypts the data (`SA_DECRYPT`).
    pub fn nv_write(
        &mut self,
        index: u32,
        data: &[u8],
        auths: &mut [Auth],
    ) -> Result<(), TpmError> {
        let mut w = Writer::new();
        w.tpm2b(data).u16(0);
        self.nv_command("NV_Write", CC_NV_WRITE, index, w.into_vec(), auths)?;
        Ok(())
    }

    /// Reads `size` bytes at offset 0 of an index that authorizes itself;
    /// `auths` as for `nv_write` (`SA_ENCRYPT` for the answer).
    pub fn nv_read(
        &mut self,
        index: u32,
        size: u16,
        auths: &mut [Auth],
    ) -> Result<Vec<u8>, TpmError> {
        let mut w = Writer::new();
        w.u16(size).u16(0);
        let out = self.nv_command("NV_Read", CC_NV_READ, index, w.into_vec(), auths)?;
        let mut r = Reader::new(&out, "NV_Read");
        let data = r.tpm2b()?.to_vec();
        r.finish()?;
        if data.len() != size as usize {
            return Err(TpmError::Malformed(format!(
                "NV_Read returned {} bytes, asked {size}",
                data.len()
            )));
        }
        Ok(data)
    }
}
