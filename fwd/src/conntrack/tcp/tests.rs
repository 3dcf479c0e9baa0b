//! The TCP tracker's flag rules.

use super::*;

#[test]
fn valid_flags_are_linuxs_nine_combinations() {
    let valid: Vec<u8> = (0..=0x3fu8).filter(|&f| valid_flags(f)).collect();
    let expect = [
        SYN,
        SYN | URG,
        SYN | ACK,
        RST,
        RST | ACK,
        FIN | ACK,
        FIN | ACK | URG,
        ACK,
        ACK | URG,
    ];
    // PSH (0x08) is ignored: each valid combination appears with and without it.
    assert_eq!(valid.len(), expect.len() * 2);
    for f in expect {
        assert!(
            valid_flags(f) && valid_flags(f | 0x08 | 0x40 | 0x80),
            "{f:#x}"
        );
    }
    assert!(!valid_flags(SYN | FIN));
    assert!(!valid_flags(0));
    assert!(!valid_flags(FIN));
}

#[test]
fn new_connections_start_on_syn_or_loose_ack_only() {
    assert!(new_ok(SYN, false));
    assert!(new_ok(ACK, true));
    assert!(!new_ok(ACK, false));
    assert!(!new_ok(SYN | ACK, true));
    assert!(!new_ok(FIN | ACK, true));
    assert!(!new_ok(RST, true));
}
