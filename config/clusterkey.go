package config

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// keyCheckKey is the state key holding a check value of the cluster's
// secret key, so that a gateway started with another key (or none) stops
// with what to do instead of sealing with a key its peers lack.
const keyCheckKey = "secret-key-check"

// ErrNoClusterKey says the cluster's secrets are sealed with a key this
// process does not have.
var ErrNoClusterKey = errors.New("the cluster's secrets are sealed with a secret key this gateway does not have")

// keyCheck is a value that identifies key without revealing it.
func keyCheck(key []byte) string {
	return base64.RawStdEncoding.EncodeToString(derive(key, "rbdgw secret key check"))
}

// ClusterHasKey reports whether the cluster under statePrefix already
// has a secret key (its check value is stored).
func ClusterHasKey(ctx context.Context, cli *clientv3.Client, statePrefix string) (bool, error) {
	resp, err := cli.Get(ctx, statePrefix+keyCheckKey, clientv3.WithCountOnly())
	if err != nil {
		return false, unavailable(ctx, "read the secret key check", err)
	}
	return resp.Count > 0, nil
}

// AdoptClusterKey makes key the cluster's secret key if it has none yet,
// else checks that key is the cluster's. Two gateways racing agree on
// whichever was written first; the other is refused.
func AdoptClusterKey(ctx context.Context, cli *clientv3.Client, statePrefix string, key []byte) error {
	k, want := statePrefix+keyCheckKey, keyCheck(key)
	resp, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, want)).
		Else(clientv3.OpGet(k)).Commit()
	if err != nil {
		return unavailable(ctx, "write the secret key check", err)
	}
	if resp.Succeeded {
		return nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) != 1 || !hmac.Equal(kvs[0].Value, []byte(want)) {
		return fmt.Errorf("%w (its key differs from this one)", ErrNoClusterKey)
	}
	return nil
}

// GenerateSecretKey writes a new random key to path (0600, never
// replacing a file) in LoadSecretKey's format and returns it.
func GenerateSecretKey(path string) ([]byte, error) {
	key := make([]byte, SecretKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := WriteSecretFile(path, []byte(base64.StdEncoding.EncodeToString(key)+"\n")); err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	return key, nil
}

// DeriveKey returns a key for purpose derived from the cluster's secret
// key (the peer link's, say), so that no second secret needs storing.
func DeriveKey(key []byte, purpose string) []byte { return derive(key, purpose) }
