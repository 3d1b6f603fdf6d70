package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/rbdgw/rbdgw/config"
)

// Error is an answer other than success: an HTTP status and a message,
// and for validation failures the configuration path at fault.
type Error struct {
	Status int
	Msg    string
	Field  string
}

func (e *Error) Error() string { return e.Msg }

// Sentinels an ImageService wraps its failures in, so the API answers
// with the right status whatever the storage.
var (
	ErrNotFound    = errors.New("not found")
	ErrExists      = errors.New("already exists")
	ErrBusy        = errors.New("in use")
	ErrUnsupported = errors.New("not supported")
)

func notFound(format string, args ...any) *Error {
	return &Error{Status: http.StatusNotFound, Msg: fmt.Sprintf(format, args...)}
}

func conflict(format string, args ...any) *Error {
	return &Error{Status: http.StatusConflict, Msg: fmt.Sprintf(format, args...)}
}

func badRequest(field, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Msg: fmt.Sprintf(format, args...), Field: field}
}

// errorBody is the JSON of every failed request.
type errorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// classify turns any error into an *Error: ours as they are, config
// validation into 400 naming the first field, a lost store into 503.
func classify(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var fe *config.FieldError
	if errors.As(err, &fe) {
		// The message lists every problem; the field names the first.
		return &Error{Status: http.StatusBadRequest, Msg: strings.ReplaceAll(err.Error(), "\n", "; "), Field: fe.Path}
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return &Error{Status: http.StatusRequestEntityTooLarge, Msg: err.Error()}
	case errors.Is(err, config.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return &Error{Status: http.StatusServiceUnavailable, Msg: err.Error()}
	case errors.Is(err, ErrNotFound):
		return &Error{Status: http.StatusNotFound, Msg: err.Error()}
	case errors.Is(err, ErrExists), errors.Is(err, ErrBusy):
		return &Error{Status: http.StatusConflict, Msg: err.Error()}
	case errors.Is(err, ErrUnsupported):
		return &Error{Status: http.StatusNotImplemented, Msg: err.Error()}
	}
	return &Error{Status: http.StatusInternalServerError, Msg: err.Error()}
}

func writeError(w http.ResponseWriter, err error) {
	e := classify(err)
	writeJSON(w, e.Status, errorBody{Error: e.Msg, Field: e.Field})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// decode reads a JSON body strictly: an unknown key is a typo the client
// wants to hear about, not to have ignored.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return badRequest("", "request body: %v", err)
	}
	if dec.More() {
		return badRequest("", "request body: more than one JSON value")
	}
	return nil
}
