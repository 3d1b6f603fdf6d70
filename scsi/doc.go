// Package scsi is the SCSI device server of rbdgw: it decodes CDBs into
// typed commands, executes the SPC-4/SBC-3 commands of a disk logical unit
// against a Backend, and keeps the per-LU state SAM requires (unit
// attentions per I_T nexus, reservations, mode pages). It knows nothing of
// iSCSI: a transport hands it Commands through the Router interface.
package scsi
