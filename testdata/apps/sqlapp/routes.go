package main

import (
	"database/sql"
	"fmt"
	"net/http"
)

// handler answers 500 with the error text, or 200 with the text it returns.
func handler(f func(r *http.Request) (string, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := f(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, body)
	}
}

// drain reads every row, so the whole query is traced, then closes.
func drain(rows *sql.Rows) (int, error) {
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
	}
	if err := rows.Err(); err != nil {
		return n, err
	}
	return n, rows.Close()
}

func routes(mux *http.ServeMux, db *sql.DB, t string) {
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})

	mux.Handle("GET /query", handler(func(r *http.Request) (string, error) {
		rows, err := db.QueryContext(r.Context(), "SELECT id, name FROM "+t+" WHERE id = "+ph(1), 1)
		if err != nil {
			return "", err
		}
		n, err := drain(rows)
		return fmt.Sprintf("%d rows", n), err
	}))

	mux.Handle("GET /queryrow", handler(func(r *http.Request) (string, error) {
		var name string
		err := db.QueryRowContext(r.Context(), "SELECT name FROM "+t+" WHERE id = 2").Scan(&name)
		return name, err
	}))

	mux.Handle("GET /exec", handler(func(r *http.Request) (string, error) {
		res, err := db.ExecContext(r.Context(), "UPDATE "+t+" SET name = 'carol' WHERE id = 2")
		if err != nil {
			return "", err
		}
		n, err := res.RowsAffected()
		return fmt.Sprintf("%d updated", n), err
	}))

	mux.Handle("GET /prepare", handler(func(r *http.Request) (string, error) {
		stmt, err := db.PrepareContext(r.Context(), "INSERT INTO "+t+"_audit (id, msg) VALUES ("+ph(1)+", "+ph(2)+")")
		if err != nil {
			return "", err
		}
		defer stmt.Close()
		if _, err := stmt.ExecContext(r.Context(), 7, "prepared"); err != nil {
			return "", err
		}
		return "prepared", stmt.Close()
	}))

	tx := handler(func(r *http.Request) (string, error) {
		end := r.URL.Query().Get("end")
		tx, err := db.BeginTx(r.Context(), nil)
		if err != nil {
			return "", err
		}
		if _, err := tx.ExecContext(r.Context(), "INSERT INTO "+t+"_audit (id, msg) VALUES (8, 'in tx')"); err != nil {
			tx.Rollback()
			return "", err
		}
		if end == "commit" {
			return "committed", tx.Commit()
		}
		return "rolled back", tx.Rollback()
	})
	mux.HandleFunc("GET /tx", func(w http.ResponseWriter, r *http.Request) {
		if end := r.URL.Query().Get("end"); end != "commit" && end != "rollback" {
			http.Error(w, fmt.Sprintf("end=%q: want commit or rollback", end), http.StatusBadRequest)
			return
		}
		tx(w, r)
	})

	// The table does not exist: the span must carry the driver's error.
	mux.Handle("GET /fail", handler(func(r *http.Request) (string, error) {
		rows, err := db.QueryContext(r.Context(), "SELECT name FROM "+t+"_missing WHERE id = 1")
		if err != nil {
			return "", err
		}
		_, err = drain(rows)
		if err == nil {
			err = fmt.Errorf("%s_missing exists", t)
		}
		return "", err
	}))

	// The literals must not reach exported spans: the agent sanitizes them.
	mux.Handle("GET /secret", handler(func(r *http.Request) (string, error) {
		rows, err := db.QueryContext(r.Context(), "SELECT id FROM "+t+" WHERE name = 'hunter2-secret' AND id <> 4111111111111111")
		if err != nil {
			return "", err
		}
		n, err := drain(rows)
		return fmt.Sprintf("%d rows", n), err
	}))
}
